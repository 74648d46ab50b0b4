import json

import pytest

from robot_stack.data.checkpoints import COMPLETE_MARKER, CheckpointStore


def write_value(value):
    def write(directory):
        (directory / "value.json").write_text(json.dumps(value))

    return write


def read_value(info):
    return json.loads((info.path / "value.json").read_text())


def test_the_newest_complete_checkpoint_is_loaded(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    for value in (1, 2, 3):
        store.save(write_value(value), {"value": value})
    info, value = store.load_latest(read_value)
    assert value == 3 and info.meta["value"] == 3


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for value in range(5):
        store.save(write_value(value), {})
    assert [read_value(info) for info in store.complete()] == [3, 4]


def test_a_checkpoint_cut_short_while_saving_is_ignored(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(write_value("good"), {})
    (tmp_path / "ckpt-000001.tmp").mkdir()  # killed before the rename
    (tmp_path / "ckpt-000002").mkdir()  # no completion marker
    info, value = store.load_latest(read_value)
    assert value == "good"


def test_a_checkpoint_that_fails_to_load_falls_back_to_the_older_one(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep=3)
    store.save(write_value("old"), {})
    newest = store.save(write_value("new"), {})
    (newest.path / "value.json").write_text("{corrupt")
    info, value = store.load_latest(read_value)
    assert value == "old"
    assert "could not be loaded" in caplog.text


def test_an_unreadable_completion_marker_is_reported_and_skipped(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    info = store.save(write_value(1), {})
    (info.path / COMPLETE_MARKER).write_text("[not json")
    assert store.load_latest(read_value) == (None, None)
    assert "unreadable" in caplog.text


def test_new_checkpoints_never_reuse_the_name_of_a_broken_one(tmp_path):
    store = CheckpointStore(tmp_path)
    (tmp_path / "ckpt-000007").mkdir()
    info = store.save(write_value(1), {})
    assert info.index == 8


def test_a_file_where_the_checkpoint_dir_should_be_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoints"
    path.write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        CheckpointStore(path)
