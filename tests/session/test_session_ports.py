"""The session's learner binds its ports itself: a loopback port another process takes after the
session looked is replaced by a free one and the learner started again."""

from __future__ import annotations

import socket

import pytest

from robot_stack import session as session_module
from robot_stack.config import load_task_config
from robot_stack.config import with_fields


# Two learner starts (the first waits out the bind patience) and an actor: ~15 s on 2 busy
# cores. The fast variant: tests/transport/test_learner_ports.py (the error the retry reads).
@pytest.mark.slow
def test_a_port_taken_between_the_check_and_the_learners_bind_is_replaced_and_the_session_runs(
        quick_task, tmp_path, monkeypatch, capsys):
    config = load_task_config(quick_task)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    config = with_fields(config, "session", transitions_port=taken)
    # Free when the session looks, taken when the learner binds: the race another process can win.
    monkeypatch.setattr(session_module, "_port_free", lambda host, port: True)
    try:
        summary = session_module.run_session(config, tmp_path / "run", demos=tmp_path / "demos", max_env_steps=1,
                                             progress=False)
    finally:
        holder.close()
    assert summary["env_steps"] >= 1
    ran = load_task_config(tmp_path / "run" / "config.yaml").session
    assert ran.transitions_port != taken
    assert f"port {taken} on 127.0.0.1 (session.transitions_port) is in use" in capsys.readouterr().err
