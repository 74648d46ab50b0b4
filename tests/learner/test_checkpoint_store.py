import json

import pytest

from robot_stack.data.checkpoints import COMPLETE_MARKER, OWNER_FILE, CheckpointIdentity, CheckpointMismatchError, CheckpointStore


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


PICK = CheckpointIdentity("pick_cube", {"observation": {"state": "float32[16]"}, "action": {"actions": "float32[4]"}})
PEG_SAME_SPEC = CheckpointIdentity("peg_insertion", dict(PICK.spec))
PICK_OTHER_SPEC = CheckpointIdentity("pick_cube", {"observation": {"state": "float32[13]"}, "action": {"actions": "float32[4]"}})


def test_a_checkpoint_of_another_task_is_refused_with_both_tasks_named(tmp_path):
    CheckpointStore(tmp_path, identity=PEG_SAME_SPEC).save(write_value(1), {})

    with pytest.raises(CheckpointMismatchError, match="task 'peg_insertion', this learner's task is 'pick_cube'") as refused:
        CheckpointStore(tmp_path, identity=PICK).load_latest(read_value)
    assert "\n" not in str(refused.value)


def test_a_checkpoint_of_another_spec_is_refused_with_both_specs_named(tmp_path):
    CheckpointStore(tmp_path, identity=PICK_OTHER_SPEC).save(write_value(1), {})

    with pytest.raises(CheckpointMismatchError, match=r"observation.state 'float32\[13\]' in the checkpoint, 'float32\[16\]' here"):
        CheckpointStore(tmp_path, identity=PICK).load_latest(read_value)


def test_pruning_removes_only_the_checkpoints_of_its_own_run(tmp_path):
    other_task = CheckpointStore(tmp_path, identity=PEG_SAME_SPEC).save(write_value("peg"), {})
    other_spec = CheckpointStore(tmp_path, identity=PICK_OTHER_SPEC).save(write_value("other spec"), {})
    other_run = CheckpointStore(tmp_path, identity=PICK).save(write_value("another run"), {})
    ours = CheckpointStore(tmp_path, keep=2, identity=PICK)

    written = [ours.save(write_value(value), {}) for value in range(4)]

    remaining = {info.path for info in ours.complete()}
    assert remaining == {other_task.path, other_spec.path, other_run.path, written[2].path, written[3].path}


def test_a_tmp_directory_left_by_someone_else_is_not_removed(tmp_path):
    foreign = tmp_path / "ckpt-000005.tmp"
    foreign.mkdir()
    (foreign / "agent.pt").write_bytes(b"another learner is still writing this")
    store = CheckpointStore(tmp_path, keep=1)
    cut_short = tmp_path / "ckpt-000009.tmp"  # our own run, killed mid-save earlier
    cut_short.mkdir()
    (cut_short / OWNER_FILE).write_text(json.dumps({"run_id": store.run_id}))

    store.save(write_value(1), {})

    assert foreign.is_dir() and (foreign / "agent.pt").exists()
    assert not cut_short.exists()


def test_a_checkpoint_names_its_task_spec_and_run(tmp_path):
    store = CheckpointStore(tmp_path, identity=PICK)
    info = store.save(write_value(1), {"counters": {}})
    meta = json.loads((info.path / COMPLETE_MARKER).read_text())
    assert meta["task"] == "pick_cube" and meta["spec"] == PICK.spec and meta["run_id"] == store.run_id
