"""The dead-letter limit's accounting between the classify and dead-letter steps: each record
judged once, in offset order, and a dead letter sent only once judged."""

from kafka import TopicPartition

from schemas.dead_letter import ErrorType
from schemas.labels import SourceRef
from tests.unit.pipeline.steps.test_classify import Recorder
from worker.pipeline.dlq_policy import DlqPolicy
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.dead_letter import DeadLetterStep
from worker.pipeline.work_items import Rejection, WorkItem
from worker.runtime.metrics import WorkerMetrics

P0 = TopicPartition("t", 0)


def rig(count: int, max_consecutive: int = 100):
    registry = InFlightRegistry(WorkerMetrics())
    items = []
    for offset in range(count):
        items.append(WorkItem(SourceRef(topic="t", partition=0, offset=offset), 0.0, b"k", b"v"))
        registry.add(P0, items[-1])
    produce = Recorder()
    step = DeadLetterStep(produce, DlqPolicy(max_consecutive=max_consecutive, max_ratio=1.0),
                          registry, topic="dlq", worker_id="w", max_value_bytes=1024)
    return items, produce, step, registry


def reject(step: DeadLetterStep, item: WorkItem) -> None:
    item.rejection = Rejection(ErrorType.NOT_JSON, "not JSON")
    step.submit(item)


def test_a_dead_letter_waits_for_the_records_before_it_and_for_room_in_produce():
    items, produce, step, _ = rig(4)
    reject(step, items[1])
    assert produce.items == []  # offset 0 undecided: not judged, not sent
    step.labelled(items[0])
    assert produce.items == [items[1]]
    produce.full = True
    step.labelled(items[2])
    reject(step, items[3])  # judged; the produce step has no room
    assert produce.items == [items[1]]
    produce.full = False
    step.poll()
    assert produce.items == [items[1], items[3]] and items[3].output.topic == "dlq"


def test_the_limit_counts_in_offset_order_not_in_the_order_outcomes_arrive():
    items, produce, step, registry = rig(6, max_consecutive=3)
    for offset in (1, 2, 4, 5):  # decoding rejects these at once
        reject(step, items[offset])
    assert step.limit_reached is None and produce.items == []
    step.labelled(items[3])  # 1, 2 then 3 labelled ends the run; 4, 5 wait for it... and 0
    assert step.limit_reached is None and produce.items == []
    step.labelled(items[0])
    assert step.limit_reached is None  # runs of two
    assert produce.items == [items[1], items[2], items[4], items[5]]
    extra = WorkItem(SourceRef(topic="t", partition=0, offset=6), 0.0, b"k", b"v")
    registry.add(P0, extra)
    reject(step, extra)  # the third in a row
    assert "3 consecutive" in step.limit_reached and extra.cancelled
    assert len(produce.items) == 4
