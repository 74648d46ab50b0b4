"""Specification of the actor's outbox: batches kept until the learner commits them.

Batches stay in memory up to a byte bound and spill to segment files past it; a durable
outbox writes every batch to a segment so that an actor killed and restarted on the same
directory resends, under the same stream id and sequence numbers, what was never committed.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from robot_stack.transport.messages import TransitionBatch, encode, pack, unpack
from robot_stack.transport.outbox import Outbox, OutboxFull


def batch_frames(seq, fill=None):
    """The frames of one encoded transition batch; the same seq gives the same bytes."""
    observation = np.full((2, 10), seq if fill is None else fill, dtype=np.float32)
    return [bytes(frame) for frame in encode(TransitionBatch("stream", seq, {"observation": observation}))]


BATCH_BYTES = sum(len(frame) for frame in batch_frames(0))


def segment_names(directory):
    return sorted(path.name for path in directory.glob("*.seg"))


def segment_name(first_seq):
    return f"{first_seq:020d}.seg"


@pytest.fixture
def open_outbox():
    """Opens outboxes (memory bound, not durable, unless told) and closes them after the test."""
    opened = []

    def open_(directory, memory_limit_bytes=1 << 20, durable=False, **bounds):
        outbox = Outbox(directory, memory_limit_bytes, durable, **bounds)
        opened.append(outbox)
        return outbox

    yield open_
    for outbox in opened:
        outbox.close()


def add_batches(outbox, seqs):
    for seq in seqs:
        outbox.add(seq, batch_frames(seq))


# --------------------------------------------------------------------------- in memory


def packed_batch(outbox, seq, fill):
    message = TransitionBatch("stream", seq, {"observation": np.full((2, 10), fill, dtype=np.float32)})
    return pack(message, allocate=outbox.allocate)


def test_a_released_batchs_buffer_packs_a_later_batch_once_nothing_refers_to_it(open_outbox):
    outbox = open_outbox(None)
    first = packed_batch(outbox, 0, 1.0)
    first_id = id(first)
    outbox.add(0, [first])
    view = memoryview(first)  # e.g. ZeroMQ still sending it
    del first
    outbox.release(0)

    second = packed_batch(outbox, 1, 2.0)
    assert id(second) != first_id
    view.release()
    outbox.add(1, [second])
    third = packed_batch(outbox, 2, 3.0)

    assert id(third) == first_id
    np.testing.assert_array_equal(unpack(third).arrays["observation"], np.full((2, 10), 3.0, np.float32))
    assert bytes(third) == bytes(pack(TransitionBatch("stream", 2, {"observation": np.full((2, 10), 3.0, np.float32)})))


def test_buffers_kept_for_reuse_stay_within_a_quarter_of_the_memory_bound(open_outbox):
    outbox = open_outbox(None, memory_limit_bytes=8 * BATCH_BYTES)
    for seq in range(6):
        outbox.add(seq, [bytearray(BATCH_BYTES)])

    outbox.release(5)

    assert outbox.sizes()["spare_bytes"] == 2 * BATCH_BYTES


def test_frames_returns_each_added_batch_unchanged(open_outbox):
    outbox = open_outbox(None)
    add_batches(outbox, range(3))

    kept = [outbox.frames(seq) for seq in range(3)]

    assert kept == [batch_frames(seq) for seq in range(3)]


def test_release_forgets_every_batch_up_to_the_committed_seq(open_outbox):
    outbox = open_outbox(None)
    add_batches(outbox, range(3))

    outbox.release(1)

    assert [outbox.frames(seq) for seq in range(3)] == [None, None, batch_frames(2)]
    assert (outbox.unreleased, outbox.sizes()["memory_bytes"]) == (1, BATCH_BYTES)


def test_release_past_the_last_added_batch_commits_only_what_was_added(open_outbox):
    outbox = open_outbox(None)
    add_batches(outbox, range(3))

    outbox.release(10)

    assert (outbox.committed_seq, outbox.next_seq, outbox.unreleased) == (2, 3, 0)


def test_add_with_a_sequence_other_than_the_next_is_refused(open_outbox):
    outbox = open_outbox(None)
    add_batches(outbox, range(1))

    with pytest.raises(ValueError, match="outbox expected sequence 1, got 3"):
        outbox.add(3, batch_frames(3))


def test_an_outbox_without_a_directory_is_full_when_its_memory_bound_is_reached(open_outbox):
    outbox = open_outbox(None, memory_limit_bytes=2 * BATCH_BYTES)
    add_batches(outbox, range(2))

    with pytest.raises(OutboxFull, match=f"memory bound \\({2 * BATCH_BYTES} bytes\\) reached and no spill directory"):
        outbox.add(2, batch_frames(2))


def test_a_durable_outbox_needs_a_directory():
    with pytest.raises(ValueError, match="a durable outbox needs a directory"):
        Outbox(None, 1 << 20, durable=True)


# --------------------------------------------------------------------------- spilling to disk


def test_batches_past_the_memory_bound_spill_to_segment_files_and_come_back_byte_identical(tmp_path, open_outbox):
    outbox = open_outbox(tmp_path, memory_limit_bytes=2 * BATCH_BYTES)

    add_batches(outbox, range(5))

    assert [outbox.frames(seq) for seq in range(5)] == [batch_frames(seq) for seq in range(5)]
    assert segment_names(tmp_path) == [segment_name(2)]
    assert outbox.sizes()["memory_bytes"] == 2 * BATCH_BYTES and outbox.sizes()["disk_bytes"] > 3 * BATCH_BYTES


def test_release_deletes_the_segment_files_whose_batches_are_all_released(tmp_path, open_outbox):
    outbox = open_outbox(tmp_path, memory_limit_bytes=0, segment_bytes=1)  # one batch per segment
    add_batches(outbox, range(5))

    outbox.release(2)

    assert segment_names(tmp_path) == [segment_name(3), segment_name(4)]
    assert [outbox.frames(seq) for seq in range(5)] == [None, None, None, batch_frames(3), batch_frames(4)]


def test_release_keeps_a_segment_file_that_still_holds_an_unreleased_batch(tmp_path, open_outbox):
    outbox = open_outbox(tmp_path, memory_limit_bytes=0)
    add_batches(outbox, range(5))

    outbox.release(3)

    assert segment_names(tmp_path) == [segment_name(0)]
    assert outbox.frames(4) == batch_frames(4)


def test_batches_spilled_after_every_segment_was_released_go_to_a_new_segment(tmp_path, open_outbox):
    outbox = open_outbox(tmp_path, memory_limit_bytes=0)
    add_batches(outbox, range(3))
    outbox.release(2)

    add_batches(outbox, range(3, 5))

    assert segment_names(tmp_path) == [segment_name(3)]
    assert [outbox.frames(seq) for seq in (3, 4)] == [batch_frames(3), batch_frames(4)]


def test_the_disk_bound_makes_the_outbox_full_with_a_message_naming_the_directory(tmp_path, open_outbox):
    outbox = open_outbox(tmp_path, memory_limit_bytes=0, max_disk_bytes=3 * BATCH_BYTES - 1)
    add_batches(outbox, range(2))

    with pytest.raises(OutboxFull, match=f"on disk under {re.escape(str(tmp_path))} \\(limit {3 * BATCH_BYTES - 1}\\)"):
        outbox.add(2, batch_frames(2))


# --------------------------------------------------------------------------- the directory lock


def test_a_second_outbox_on_a_directory_in_use_is_refused(tmp_path, open_outbox):
    open_outbox(tmp_path, durable=True)

    with pytest.raises(RuntimeError, match=f"outbox directory {re.escape(str(tmp_path))} is in use"):
        Outbox(tmp_path, 1 << 20, durable=True)


def test_a_closed_outbox_leaves_its_directory_free_for_the_next(tmp_path, open_outbox):
    open_outbox(tmp_path, durable=True).close()

    reopened = open_outbox(tmp_path, durable=True)

    assert reopened.next_seq == 0


# --------------------------------------------------------------------------- durable recovery


def test_a_reopened_durable_outbox_resumes_its_stream_with_the_unreleased_batches(tmp_path, open_outbox):
    first = open_outbox(tmp_path, durable=True)
    add_batches(first, range(5))
    first.release(1)
    first.close()

    reopened = open_outbox(tmp_path, durable=True)

    assert (reopened.stream_id, reopened.committed_seq, reopened.next_seq) == (first.stream_id, 1, 5)
    assert reopened.recovered == 3
    assert [reopened.frames(seq) for seq in range(5)] == [None, None, *(batch_frames(seq) for seq in range(2, 5))]


def test_a_reopened_durable_outbox_has_deleted_the_segments_of_released_batches(tmp_path, open_outbox):
    first = open_outbox(tmp_path, durable=True, segment_bytes=1)
    add_batches(first, range(4))
    first.release(1)
    first.close()

    open_outbox(tmp_path, durable=True, segment_bytes=1)

    assert segment_names(tmp_path) == [segment_name(2), segment_name(3)]


def test_batches_added_after_recovery_survive_the_next_reopen(tmp_path, open_outbox):
    first = open_outbox(tmp_path, durable=True)
    add_batches(first, range(3))
    first.close()
    second = open_outbox(tmp_path, durable=True)
    add_batches(second, range(3, 5))
    second.close()

    third = open_outbox(tmp_path, durable=True)

    assert (third.stream_id, third.next_seq) == (first.stream_id, 5)
    assert [third.frames(seq) for seq in range(5)] == [batch_frames(seq) for seq in range(5)]


KILLED_ACTOR = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_transport_outbox import add_batches
    from robot_stack.transport.outbox import Outbox

    outbox = Outbox(Path({directory!r}), 1 << 20, durable=True)
    add_batches(outbox, range(6))
    outbox.release(2)
    print(outbox.stream_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_durable_outbox_killed_without_closing_resends_its_unreleased_batches_after_restart(tmp_path, open_outbox):
    script = KILLED_ACTOR.format(tests=os.path.dirname(__file__), directory=str(tmp_path))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    restarted = open_outbox(tmp_path, durable=True)

    assert (restarted.stream_id, restarted.committed_seq, restarted.next_seq) == (killed.stdout.strip(), 2, 6)
    assert [restarted.frames(seq) for seq in range(6)] == [None] * 3 + [batch_frames(seq) for seq in range(3, 6)]


def write_three_batches_and_measure(directory, open_outbox):
    """A closed durable outbox holding batches 0..2 in one segment; (segment path, end of record 1, file size)."""
    outbox = open_outbox(directory, durable=True)
    add_batches(outbox, range(2))
    segment = directory / segment_name(0)
    end_of_second = segment.stat().st_size
    add_batches(outbox, range(2, 3))
    outbox.close()
    return segment, end_of_second, segment.stat().st_size


@pytest.mark.parametrize("kept", ["head", "frames", "all but the trailer's last byte"])
def test_a_torn_last_record_is_cut_off_on_reopen_and_the_earlier_records_survive(tmp_path, open_outbox, kept):
    segment, end_of_second, size = write_three_batches_and_measure(tmp_path, open_outbox)
    cut = {"head": end_of_second + 10, "frames": end_of_second + 60, "all but the trailer's last byte": size - 1}[kept]
    os.truncate(segment, cut)

    reopened = open_outbox(tmp_path, durable=True)

    assert reopened.next_seq == 2
    assert [reopened.frames(seq) for seq in range(3)] == [batch_frames(0), batch_frames(1), None]
    assert segment.stat().st_size == end_of_second


@pytest.mark.parametrize("garbage", [b"\x00garbage", b"RSOB\x02\x00\x00", b"RSOB" + bytes(12) + b"\xff" * 8])
def test_garbage_after_the_last_record_is_cut_off_on_reopen(tmp_path, open_outbox, garbage):
    segment, _, size = write_three_batches_and_measure(tmp_path, open_outbox)
    with open(segment, "ab") as file:
        file.write(garbage)

    reopened = open_outbox(tmp_path, durable=True)

    assert reopened.next_seq == 3
    assert [reopened.frames(seq) for seq in range(3)] == [batch_frames(seq) for seq in range(3)]
    assert segment.stat().st_size == size


def test_a_batch_added_where_a_torn_record_was_cut_survives_the_next_reopen(tmp_path, open_outbox):
    segment, end_of_second, size = write_three_batches_and_measure(tmp_path, open_outbox)
    os.truncate(segment, size - 1)
    after_cut = open_outbox(tmp_path, durable=True)
    after_cut.add(2, batch_frames(2, fill=-1.0))
    after_cut.close()

    reopened = open_outbox(tmp_path, durable=True)

    assert reopened.next_seq == 3
    assert reopened.frames(2) == batch_frames(2, fill=-1.0)


def test_a_reopened_non_durable_outbox_starts_a_new_stream_and_clears_the_old_segments(tmp_path, open_outbox):
    first = open_outbox(tmp_path, memory_limit_bytes=0)
    add_batches(first, range(3))
    first.close()

    reopened = open_outbox(tmp_path, memory_limit_bytes=0)

    assert reopened.stream_id != first.stream_id
    assert (reopened.next_seq, reopened.committed_seq, reopened.frames(0)) == (0, -1, None)
    assert segment_names(tmp_path) == []


def test_a_durable_outbox_opened_where_a_non_durable_one_spilled_starts_a_new_stream(tmp_path, open_outbox):
    # The non-durable outbox wrote only the batches past its memory bound: resuming would leave holes.
    spilled = open_outbox(tmp_path, memory_limit_bytes=2 * BATCH_BYTES)
    add_batches(spilled, range(5))
    spilled.close()

    durable = open_outbox(tmp_path, durable=True)

    assert durable.stream_id != spilled.stream_id
    assert (durable.next_seq, durable.committed_seq, durable.frames(2)) == (0, -1, None)
    assert segment_names(tmp_path) == []
