"""The in-flight registry (worker.pipeline.in_flight): contiguous watermarks, outcomes counted
once."""

import pytest
from kafka import TopicPartition

from schemas.dead_letter import ErrorType
from schemas.labels import SourceRef
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.work_items import Rejection, Stage, WorkItem
from worker.runtime.metrics import WorkerMetrics

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def track(registry: InFlightRegistry, partition: TopicPartition, *offsets: int) -> dict:
    items = {}
    for offset in offsets:
        items[offset] = WorkItem(SourceRef(topic=partition.topic, partition=partition.partition,
                                           offset=offset), 0.0)
        registry.add(partition, items[offset])
    return items


@pytest.fixture
def metrics() -> WorkerMetrics:
    return WorkerMetrics()


def test_watermark_waits_for_the_lowest_unfinished_offset(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, *range(5))
    registry.acknowledged(items[3], 1.0)
    registry.acknowledged(items[1], 1.0)
    assert registry.committable() == {}  # offset 0 is not done: nothing committable
    registry.acknowledged(items[0], 1.0)
    assert registry.committable() == {A: 2}  # 0 and 1 done, 2 not
    registry.acknowledged(items[2], 1.0)
    assert registry.committable() == {A: 4}
    registry.acknowledged(items[4], 1.0)
    assert registry.committable() == {A: 5}
    assert registry.count() == 0


def test_never_the_highest_offset_seen(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, *range(10, 20))
    for offset in range(11, 20):  # length sorting finished everything but the first
        registry.acknowledged(items[offset], 1.0)
    assert registry.committable() == {}
    registry.acknowledged(items[10], 1.0)
    assert registry.committable() == {A: 20}


def test_gaps_in_offsets_are_followed_not_computed(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, 5, 9, 30)  # compacted topic / transaction markers
    registry.acknowledged(items[9], 1.0)
    registry.acknowledged(items[5], 1.0)
    assert registry.committable() == {A: 10}
    registry.acknowledged(items[30], 1.0)
    assert registry.committable() == {A: 31}


def test_commit_bookkeeping_and_drop(metrics):
    registry = InFlightRegistry(metrics)
    a = track(registry, A, 0)
    b = track(registry, B, 0)
    registry.acknowledged(a[0], 1.0)
    offsets = registry.committable()
    assert offsets == {A: 1}
    registry.mark_committed(offsets)
    assert registry.committable() == {}  # nothing new
    assert registry.committed(A) == 1
    registry.mark_committed({A: 0})  # a late asynchronous commit never moves it back
    assert registry.committed(A) == 1
    assert registry.count() == 1 and registry.count([B]) == 1
    assert registry.drop([B]) == 1
    assert registry.count() == 0 and b[0].cancelled
    assert not registry.acknowledged(b[0], 1.0)  # a late acknowledgement of a dropped one
    assert registry.committable() == {}


def test_committed_means_committed_and_uncommitted_work_begins_at_the_first_offset_read(metrics):
    registry = InFlightRegistry(metrics)
    assert registry.committed(A) is None and registry.uncommitted_from(A) is None  # unknown
    items = track(registry, A, 7, 8)
    assert registry.committed(A) is None  # read, never committed
    assert registry.uncommitted_from(A) == 7
    registry.acknowledged(items[7], 1.0)
    registry.mark_committed(registry.committable())
    assert registry.committed(A) == 8 and registry.uncommitted_from(A) == 8


def test_only_selected_partitions(metrics):
    registry = InFlightRegistry(metrics)
    for partition in (A, B):
        registry.acknowledged(track(registry, partition, 0)[0], 1.0)
    assert registry.committable([B]) == {B: 1}


def test_offsets_must_increase(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, 3)
    with pytest.raises(ValueError):
        track(registry, A, 3)
    registry.acknowledged(items[3], 1.0)
    registry.committable()
    with pytest.raises(ValueError):
        track(registry, A, 2)


def test_each_outcome_is_counted_once_when_acknowledged(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, 0, 1)
    items[1].rejection = Rejection(ErrorType.NOT_JSON, "not JSON")
    for item in (items[0], items[1], items[0]):  # a repeated acknowledgement counts nothing
        registry.acknowledged(item, 2.0)
    value = metrics.registry.get_sample_value
    assert value("eurovoc_documents_produced_total") == 1
    assert value("eurovoc_documents_dead_lettered_total", {"reason": "not_json"}) == 1
    assert value("eurovoc_end_to_end_seconds_count") == 1
    assert items[0].stage is Stage.COMMIT


def test_an_abandoned_item_blocks_its_partition_but_is_not_in_flight(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, 0, 1, 2)
    registry.acknowledged(items[0], 1.0)
    registry.abandon(items[1])
    registry.acknowledged(items[2], 1.0)
    assert registry.count() == 0
    assert registry.committable() == {A: 1}  # never past the abandoned record


def test_the_oldest_unacknowledged_item(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, 0, 1)
    later = track(registry, B, 0)
    later[0].received_at = -1.0
    assert registry.oldest() is later[0]
    registry.acknowledged(later[0], 1.0)
    registry.acknowledged(items[0], 1.0)
    assert registry.oldest() is items[1]


def test_outcomes_settle_once_in_offset_order(metrics):
    registry = InFlightRegistry(metrics)
    items = track(registry, A, 0, 1, 2, 3)
    other = track(registry, B, 0)
    assert registry.settle(items[2], True) == []  # 0 and 1 undecided: 2 waits
    assert registry.settle(items[1], False) == []
    assert registry.settle(other[0], True) == [(other[0], True)]  # another partition: at once
    assert registry.settle(items[0], False) == [
        (items[0], False), (items[1], False), (items[2], True)]
    assert registry.settle(items[3], True) == [(items[3], True)]
    registry.drop([A])
    assert registry.settle(items[3], True) == []  # cancelled: nothing


def test_the_bytes_read_and_not_acknowledged(metrics):
    forgotten = []
    registry = InFlightRegistry(metrics, on_drop=forgotten.extend)
    items = {}
    for offset, (key, value, headers) in enumerate([
            (b"k", b"x" * 100, None), (None, b"y" * 50, [("replay.count", b"1")]),
            (b"kk", None, [("h", None)]), (None, b"z" * 10, None)]):
        items[offset] = WorkItem(SourceRef(topic="t", partition=0, offset=offset), 0.0,
                                 key, value, headers=headers)
        registry.add(A, items[offset])
    assert registry.bytes() == 101 + 50 + 13 + 3 + 10
    registry.acknowledged(items[0], 1.0)
    assert registry.bytes() == 50 + 13 + 3 + 10
    registry.abandon(items[3])
    assert registry.bytes() == 50 + 13 + 3
    assert registry.drop([A, B]) == 2 and registry.bytes() == 0
    assert forgotten == [A]  # only partitions it held
