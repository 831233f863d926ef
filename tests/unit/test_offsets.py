"""The contiguous per-partition watermark (worker.offsets)."""

import pytest

from worker.offsets import OffsetTracker, PartitionOffsets


def test_watermark_waits_for_the_lowest_unfinished_offset():
    state = PartitionOffsets()
    for offset in range(5):
        state.track(offset)
    state.complete(3)
    state.complete(1)
    assert state.advance() is None  # offset 0 is not done: nothing committable
    state.complete(0)
    assert state.advance() == 2  # 0 and 1 done, 2 not
    state.complete(2)
    assert state.advance() == 4
    state.complete(4)
    assert state.advance() == 5
    assert state.pending() == 0


def test_never_the_highest_offset_seen():
    tracker = OffsetTracker()
    for offset in range(10, 20):
        tracker.track("p0", offset)
    for offset in range(11, 20):  # length sorting finished everything but the first
        tracker.complete("p0", offset)
    assert tracker.committable() == {}
    tracker.complete("p0", 10)
    assert tracker.committable() == {"p0": 20}


def test_gaps_in_offsets_are_followed_not_computed():
    state = PartitionOffsets()
    for offset in (5, 9, 30):  # compacted topic / transaction markers
        state.track(offset)
    state.complete(9)
    state.complete(5)
    assert state.advance() == 10
    state.complete(30)
    assert state.advance() == 31


def test_commit_bookkeeping_and_forget():
    tracker = OffsetTracker()
    tracker.track("a", 0)
    tracker.track("b", 0)
    tracker.complete("a", 0)
    offsets = tracker.committable()
    assert offsets == {"a": 1}
    tracker.mark_committed(offsets)
    assert tracker.committable() == {}  # nothing new
    assert tracker.committed("a") == 1
    assert tracker.pending() == 1 and tracker.pending("b") == 1
    tracker.forget("b")
    assert tracker.pending() == 0
    tracker.complete("b", 0)  # a late acknowledgement of a forgotten partition is ignored
    assert tracker.committable() == {}


def test_only_selected_partitions():
    tracker = OffsetTracker()
    for key in ("a", "b"):
        tracker.track(key, 0)
        tracker.complete(key, 0)
    assert tracker.committable(["b"]) == {"b": 1}


def test_offsets_must_increase():
    state = PartitionOffsets()
    state.track(3)
    with pytest.raises(ValueError):
        state.track(3)
    state.complete(3)
    state.advance()
    with pytest.raises(ValueError):
        state.track(2)
