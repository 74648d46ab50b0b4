"""One bad message never takes a learner's link down: what fails to decode or to be handled is
logged naming the peer and dropped; batches whose content does not match the announced spec
are rejected without stalling their stream; stats and events are bounded per actor; a peer
failing the CurveZMQ handshake is logged."""

from __future__ import annotations

import logging
import re
import struct

import msgpack
import numpy as np
import pytest

from robot_stack.data.spec import ArraySpec, check_batch, transition_batch_spec
from robot_stack.transport import ActorLink, Hello, LearnerLink, Refuse, Stats, generate_keys
from robot_stack.transport import actor_link as actor_link_module
from robot_stack.transport import learner_link as learner_link_module
from robot_stack.transport.sockets import QuietLog
from robot_stack.transport.messages import pack, unpack
from robot_stack.transport.validation import ReportRules, episode_end_detail
from robot_stack.transport.wire import PROTOCOL_VERSION, join_frames
from test_transport_links import (  # noqa: F401 (fixtures)
    actor,
    batch,
    keys,
    learner,
    links,
    receive_all,
    secured,
    session,
    wait_until,
    welcomed_dealer,
)

OBSERVATION_SPEC = {"state": ArraySpec("<f4", (5,))}
ACTION_SPEC = {"actions": ArraySpec("<f4", (3,))}
BATCH_SPEC = transition_batch_spec(OBSERVATION_SPEC, ACTION_SPEC)


def transitions(count: int = 2, value: float = 0.5) -> dict[str, np.ndarray]:
    return {key: np.full((count, *spec.shape), value, np.dtype(spec.dtype)) for key, spec in BATCH_SPEC.items()}


def checking_learner(config, **kwargs) -> LearnerLink:
    return LearnerLink(config, task_id="pick", observation_spec=OBSERVATION_SPEC, action_spec=ACTION_SPEC,
                       check_batches=True, **kwargs)


def transition_actor(config, actor_id: str = "robot1") -> ActorLink:
    return ActorLink(config, actor_id, "pick", OBSERVATION_SPEC, ACTION_SPEC)


def raw_batch_with_table(entries: list, parts: list[bytes], seq: int = 0) -> bytes:
    header = {"type": "transitions", "stream_id": "s" * 32, "seq": seq, "info": {}, "sent_time": 0.0}
    head = b"RSTP" + struct.pack("<H", PROTOCOL_VERSION) + msgpack.packb(header)
    return bytes(join_frames([head, msgpack.packb(entries), *parts]))


# --------------------------------------------------------------------------- decode failures


def test_an_empty_array_with_an_absurd_shape_is_dropped_and_the_link_keeps_serving(session, links, caplog) -> None:
    config = session()
    caplog.set_level(logging.WARNING)
    server = links(learner(config).start())
    dealer = welcomed_dealer(config)
    dealer.send(raw_batch_with_table([["image", "|u1", [0, 2**28, 2**28, 2**28]]], [b""]))
    client = links(actor(config, "robot2").start())

    client.send(batch(0))
    received = receive_all(server, 1)
    dealer.close()

    assert [b.seq for b in received] == [0]
    assert server.counters.malformed == 1
    assert any("from actor 'robot1'" in r.getMessage() and "'image'" in r.getMessage() for r in caplog.records)


def test_a_message_the_decoder_fails_on_in_any_way_is_logged_naming_the_peer_and_dropped(
    session, links, caplog, monkeypatch
) -> None:
    real_unpack = learner_link_module.unpack

    def unpack_failing_on_a_marker(data, limits):
        if b"poison-marker" in bytes(data):
            raise RuntimeError("the decoder met something it did not expect")
        return real_unpack(data, limits)

    monkeypatch.setattr(learner_link_module, "unpack", unpack_failing_on_a_marker)
    config = session()
    caplog.set_level(logging.WARNING)
    server = links(learner(config).start())
    dealer = welcomed_dealer(config)
    dealer.send(bytes(pack(Stats("robot1", {"note": "poison-marker"}))))
    client = links(actor(config, "robot2").start())

    client.send(batch(0))
    received = receive_all(server, 1)
    dealer.close()

    assert [b.seq for b in received] == [0]
    assert any(
        "from actor 'robot1'" in r.getMessage() and "RuntimeError: the decoder met something" in r.getMessage()
        for r in caplog.records
    )


# --------------------------------------------------------------------------- batch content


def nan_state(arrays):
    arrays["observations/state"][1, 2] = np.nan


def inf_reward(arrays):
    arrays["rewards"][0] = np.inf


def missing_rewards(arrays):
    del arrays["rewards"]


def extra_array(arrays):
    arrays["secret"] = np.zeros(2, np.float32)


def float64_actions(arrays):
    arrays["actions"] = arrays["actions"].astype(np.float64)


def short_state(arrays):
    arrays["next_observations/state"] = arrays["next_observations/state"][:, :4].copy()


def actions_out_of_range(arrays):
    arrays["actions"][0, 1] = 7.0


def bool_byte_two(arrays):
    arrays["terminated"] = np.array([0, 2], np.uint8).view(bool)


POISONS = {
    "a NaN in an observation": (nan_state, "'observations/state' holds a NaN"),
    "an infinite reward": (inf_reward, "'rewards' holds a NaN or infinity"),
    "a missing array": (missing_rewards, "missing \\['rewards'\\]"),
    "an unannounced array": (extra_array, "unexpected \\['secret'\\]"),
    "a wrong dtype": (float64_actions, "'actions' is float64"),
    "a wrong shape": (short_state, "'next_observations/state' is float32\\[2, 4\\]"),
    "actions outside [-1, 1]": (actions_out_of_range, "'actions' holds values outside \\[-1, 1\\]"),
    "a bool that is neither 0 nor 1": (bool_byte_two, "'terminated' holds bytes other than 0 and 1"),
}


@pytest.mark.parametrize("poison", POISONS, ids=list(POISONS))
def test_check_batch_names_the_array_and_the_problem(poison) -> None:
    spoil, problem = POISONS[poison]
    arrays = transitions()
    spoil(arrays)

    with pytest.raises(ValueError, match=f"^here: .*{problem}"):
        check_batch(arrays, BATCH_SPEC, where="here")


def test_check_batch_accepts_a_batch_that_matches_its_spec() -> None:
    check_batch(transitions(count=3), BATCH_SPEC, where="here")


@pytest.mark.parametrize("poison", ["a NaN in an observation", "a missing array", "a wrong dtype", "a wrong shape"])
def test_a_batch_that_breaks_the_announced_spec_is_rejected_and_the_stream_goes_on(session, links, caplog, poison) -> None:
    spoil, problem = POISONS[poison]
    config = session()
    caplog.set_level(logging.WARNING)
    server = links(checking_learner(config).start())
    client = links(transition_actor(config).start())
    bad = transitions()
    spoil(bad)

    client.send(transitions())
    client.send(bad)
    last = client.send(transitions())
    received = receive_all(server, 2)

    assert [b.seq for b in received] == [0, 2]
    assert server.counters.rejected == 1 and server.counters.batches == 2 and server.counters.transitions == 4
    assert server.delivered_state() == {client.status().stream_id: last}
    rejections = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected batch 1")]
    assert len(rejections) == 1
    assert f"of stream {client.status().stream_id} from actor 'robot1'" in rejections[0]
    assert re.search(problem, rejections[0])


def test_a_rejected_last_batch_is_acknowledged_delivered_in_order_and_once_committed_forgotten(session, links) -> None:
    config = session()
    server = links(checking_learner(config).start())
    client = links(transition_actor(config).start())
    bad = transitions()
    nan_state(bad)

    client.send(transitions())
    rejected_seq = client.send(bad)
    acknowledged = wait_until(lambda: client.status().received_seq >= rejected_seq)
    stream = client.status().stream_id
    taken = []
    wait_until(lambda: taken.extend(server.receive()) or server.delivered_state().get(stream) == rejected_seq)
    server.commit(server.delivered_state())
    forgotten = wait_until(lambda: client.status().committed_seq == rejected_seq)

    assert acknowledged and forgotten
    assert [b.seq for b in taken] == [0]
    assert client.status().outbox["unreleased_batches"] == 0


def test_without_check_batches_the_link_carries_any_arrays(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())

    client.send(batch(0))

    assert [b.seq for b in receive_all(server, 1)] == [0]


# --------------------------------------------------------------------------- stats and events


def reports_of(server: LearnerLink, count: int) -> list:
    reports = []
    wait_until(lambda: reports.extend(server.reports()) or len(reports) >= count)
    return reports


def test_stats_with_too_many_values_are_dropped_and_logged_naming_the_actor(session, links, caplog) -> None:
    config = session()
    caplog.set_level(logging.WARNING)
    server = links(checking_learner(config).start())
    client = links(transition_actor(config).start())
    client.wait_connected(5)

    client.send_stats({f"key_{index}": index for index in range(5000)})
    client.send_stats({"loop_hz": 10.0})
    reports = reports_of(server, 1)

    assert [r.message.values for r in reports] == [{"loop_hz": 10.0}]
    assert server.counters.reports_dropped == 1
    assert any("dropped stats from actor 'robot1': 5000 values; at most 64" in r.getMessage() for r in caplog.records)


def test_stats_values_that_break_a_rule_are_dropped_and_the_rest_kept(session, links) -> None:
    config = session()
    server = links(checking_learner(config).start())
    client = links(transition_actor(config).start())
    client.wait_connected(5)

    client.send_stats({"loop_hz": 10.0, "bad name,with comma": 1, "nested": {"a": 1}, "long_text": "x" * 1000,
                       "label": "ok", "missing": None})
    reports = reports_of(server, 1)

    assert reports[0].message.values == {"loop_hz": 10.0, "label": "ok", "missing": None}


def test_an_actor_may_introduce_only_a_bounded_number_of_stats_names_over_its_life(session, links) -> None:
    config = session()
    server = links(checking_learner(config, report_rules=ReportRules(max_keys=10, max_names_per_actor=15)).start())
    client = links(transition_actor(config).start())
    client.wait_connected(5)

    for start in range(0, 40, 10):
        client.send_stats({f"name_{index}": index for index in range(start, start + 10)})
    client.send_stats({"name_0": -1})
    reports = reports_of(server, 3)

    names = set().union(*(r.message.values for r in reports))
    assert names == {f"name_{index}" for index in range(15)}
    assert reports[-1].message.values == {"name_0": -1}


def test_reports_beyond_the_rate_limit_are_dropped_per_connection(session, links) -> None:
    config = session()
    server = links(checking_learner(config, report_rules=ReportRules(messages_per_s=1.0, burst_messages=20)).start())
    flooder = links(transition_actor(config).start())
    calm = links(transition_actor(config, "robot2").start())
    flooder.wait_connected(5)
    calm.wait_connected(5)

    for index in range(200):
        flooder.send_event("tick", {"index": index})
    wait_until(lambda: server.counters.reports_dropped >= 150)
    calm.send_event("episode_end", {"length": 3})
    reports = reports_of(server, 22)

    from_flooder = [r for r in reports if r.actor_id == "robot1"]
    assert 20 <= len(from_flooder) <= 25
    assert [r.message.detail for r in reports if r.actor_id == "robot2"] == [{"length": 3}]


def test_an_event_whose_detail_breaks_a_rule_is_dropped(session, links) -> None:
    config = session()
    server = links(checking_learner(config).start())
    client = links(transition_actor(config).start())
    client.wait_connected(5)

    client.send_event("episode_end", {"length": [1, 2]})
    client.send_event("episode_end", {"length": 2})
    reports = reports_of(server, 1)

    assert [r.message.detail for r in reports] == [{"length": 2}]
    assert server.counters.reports_dropped == 1


@pytest.mark.parametrize(
    "detail, field",
    [({"length": "ten"}, "length"), ({"return": float("nan")}, "return"), ({"success": 2}, "success"),
     ({"weights_version": -5}, "weights_version"), ({"intervention_steps": 1.5}, "intervention_steps"),
     ({"intervened": "yes"}, "intervened")],
)
def test_an_episode_end_detail_with_a_bad_field_is_refused_naming_it(detail, field) -> None:
    with pytest.raises(ValueError, match=f"episode_end field '{field}'"):
        episode_end_detail(detail)


def test_an_episode_end_detail_comes_back_plain() -> None:
    detail = episode_end_detail({"success": True, "length": 10, "return": 2, "weights_version": -1, "note": "kept"})

    assert detail == {"success": 1, "length": 10, "return": 2.0, "weights_version": -1, "note": "kept"}
    assert type(detail["return"]) is float


# --------------------------------------------------------------------------- CurveZMQ handshakes


def test_a_peer_without_a_curve_key_is_refused_and_logged(session, links, keys, caplog) -> None:
    secure = secured(session, keys, keys / "actors" / "robot1.key_secret")
    caplog.set_level(logging.WARNING)
    server = links(learner(secure).start())
    plain = session()
    client = links(actor(plain).start())

    connected = client.wait_connected(0.5)
    logged = wait_until(lambda: any("offered no CurveZMQ key" in r.getMessage() for r in caplog.records), timeout_s=15)

    assert not connected and logged
    assert server.counters.handshakes_failed >= 1


def test_a_peer_holding_another_learner_key_is_refused_and_logged(session, links, keys, caplog, tmp_path) -> None:
    generate_keys(tmp_path / "other", "learner")
    secure = secured(session, keys, keys / "actors" / "robot1.key_secret")
    caplog.set_level(logging.WARNING)
    server = links(learner(secure).start())
    wrong = secured(session, keys, keys / "actors" / "robot1.key_secret").model_copy(
        update={"server_public_key_file": tmp_path / "other" / "learner.key"}
    )
    client = links(actor(wrong).start())

    connected = client.wait_connected(0.5)
    logged = wait_until(lambda: any("did not decrypt" in r.getMessage() for r in caplog.records), timeout_s=15)

    assert not connected and logged
    assert server.counters.handshakes_failed >= 1


# --------------------------------------------------------------------------- the log itself


def test_a_peer_repeating_a_refused_hello_is_logged_once_not_per_hello(session, links, caplog) -> None:
    config = session()
    caplog.set_level(logging.WARNING)
    links(learner(config).start())
    dealer = welcomed_dealer(config)
    for _ in range(50):
        dealer.send(pack(Hello("robot1", "another_task", "s" * 32)))
    refusals = 0
    while dealer.poll(1000) and refusals < 50:
        refusals += isinstance(unpack(dealer.recv()), Refuse)
    dealer.close()

    assert refusals == 50
    assert len([r for r in caplog.records if r.getMessage().startswith("refused: actor 'robot1'")]) == 1


def test_the_quiet_log_keeps_a_bounded_number_of_kinds() -> None:
    quiet = QuietLog(logging.getLogger("test.quiet"))
    for index in range(10 * QuietLog.MAX_KINDS):
        quiet.warning(f"peer-{index}", "a problem")

    assert len(quiet._last) <= QuietLog.MAX_KINDS


def test_an_actor_drops_a_learner_message_its_decoder_fails_on_in_any_way_and_carries_on(session, links, monkeypatch):
    real_unpack = actor_link_module.unpack
    failures = []

    def unpack_failing_three_times(data, limits):
        if len(failures) < 3:
            failures.append(1)
            raise RuntimeError("the decoder met something it did not expect")
        return real_unpack(data, limits)

    monkeypatch.setattr(actor_link_module, "unpack", unpack_failing_three_times)
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())

    client.send(batch(0))
    received = receive_all(server, 1)

    assert [b.seq for b in received] == [0]
    assert client.wait_connected(5) and client.status().malformed_dropped >= 3
