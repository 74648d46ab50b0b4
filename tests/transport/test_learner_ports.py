"""A learner whose port another process holds fails with an error that names the port, the
host and the config field to change, instead of ZeroMQ's bare "Address already in use"."""

from __future__ import annotations

import socket

import pytest

from robot_stack.config import SessionConfig
from robot_stack.data.spec import ArraySpec
from robot_stack.transport import LearnerLink, PortInUse
from test_transport_restarts import free_ports

SPEC = {"state": ArraySpec("<f4", (3,))}
ACTION = {"action": ArraySpec("<f4", (2,))}


@pytest.mark.parametrize("field", ["transitions_port", "weights_port"])
def test_a_port_held_by_another_socket_is_named_with_its_config_field(tmp_path, field):
    transitions_port, weights_port = free_ports(2)
    session = SessionConfig(learner_host="127.0.0.1", transitions_port=transitions_port, weights_port=weights_port,
                            transport={"outbox_dir": str(tmp_path / "outbox")})
    taken = getattr(session, field)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        link = LearnerLink(session, "learner", "task", SPEC, ACTION)
        with pytest.raises(PortInUse) as failure:
            link.start()
        link.close()
    assert failure.value.port == taken and failure.value.field == f"session.{field}"
    assert f"port {taken} on 127.0.0.1 (session.{field}) is in use" in str(failure.value)
