"""The learner's status.json: one contract that the learner writes and the session reads."""

from __future__ import annotations

import json

import pytest

from robot_stack.data.status import STATUS_FIELDS, read_status, status_path, write_status


def a_status(**changes):
    status = {name: 0 for name in STATUS_FIELDS}
    status.update(task="peg", actors=["actor0"], stopped=False, success_rate=None)
    status.update(changes)
    return status


def test_a_written_status_reads_back_from_the_log_dir(tmp_path):
    write_status(tmp_path / "logs", a_status(env_steps=120))

    status = read_status(tmp_path / "logs")

    assert status == a_status(env_steps=120)
    assert status_path(tmp_path / "logs") == tmp_path / "logs" / "status.json"


def test_there_is_no_status_before_the_learner_writes_one(tmp_path):
    assert read_status(tmp_path) is None


def test_a_half_written_or_foreign_status_file_reads_as_none(tmp_path):
    status_path(tmp_path).write_text('{"env_steps": 1')
    assert read_status(tmp_path) is None
    status_path(tmp_path).write_text("[1, 2]")
    assert read_status(tmp_path) is None


def test_a_status_without_a_contract_field_is_refused_naming_the_field(tmp_path):
    status = a_status()
    del status["env_steps"]

    with pytest.raises(ValueError, match="missing fields \\['env_steps'\\]"):
        write_status(tmp_path, status)
    assert not status_path(tmp_path).exists()


def test_a_status_with_a_field_outside_the_contract_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="unknown fields \\['loss'\\]"):
        write_status(tmp_path, a_status(loss=0.3))


def test_the_session_reads_the_status_file_the_learner_writes(tmp_path):
    from robot_stack import session

    write_status(tmp_path, a_status(env_steps=7))

    assert session.read_status(tmp_path)["env_steps"] == 7
    assert json.loads((tmp_path / "status.json").read_text())["env_steps"] == 7
