"""The same contracts for the produce step, the commit step and the processor, against the
in-memory Kafka and against the real broker (``backend`` fixture)."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from schemas.document import InputDocument
from schemas.labels import SourceRef
from tests.contract.backends import backend, settings_for  # noqa: F401 - the fixture
from tests.fake_engine import FakeEngine, labels
from worker.app import build_processor
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.processor import ExitCode
from worker.pipeline.progress import Progress
from worker.pipeline.steps.base import MessageRejected
from worker.pipeline.steps.commit import CommitStep
from worker.pipeline.steps.produce import DeliveryFailed, ProduceStep
from worker.pipeline.work_items import Output, Stage, WorkItem
from worker.runtime.http_endpoints import HealthState
from worker.runtime.metrics import WorkerMetrics


class Collect:
    """A last step that keeps what it was given."""

    def __init__(self) -> None:
        self.items: list[WorkItem] = []

    def submit(self, item: WorkItem) -> None:
        self.items.append(item)

    def poll(self) -> None:
        pass

    def join(self, timeout) -> None:
        pass

    def close(self) -> None:
        pass


def labelled(doc_id: str, offset: int) -> WorkItem:
    item = WorkItem(SourceRef(topic="in", partition=0, offset=offset), time.monotonic(),
                    document=InputDocument(id=doc_id, text="fish"), stage=Stage.TOKENIZE)
    item.labels = labels(item)
    return item


def test_produce_step_delivers_outputs_and_dead_letters_then_hands_them_on(backend):
    settings = settings_for(backend)
    producer = backend.producer(settings)
    collect = Collect()
    step = ProduceStep(producer, collect, output_topic=settings.kafka.output_topic,
                       max_buffer_bytes=1 << 20, wakeup=threading.Event())
    items = [labelled(f"doc-{i}", i) for i in range(20)]
    letter = labelled("bad", 20)
    letter.output = Output(settings.kafka.dlq_topic, b"k", b"\xff", [("error.type", b"not_utf8")])
    for item in [*items, letter]:
        step.submit(item)
    step.join(30)
    assert collect.items
    assert {id(item) for item in collect.items} == {id(item) for item in [*items, letter]}
    assert step.unacknowledged() == 0
    outputs = backend.read(settings.kafka.output_topic, 20)
    assert sorted(key for key, _, _ in outputs) == sorted(f"doc-{i}".encode() for i in range(20))
    assert orjson.loads(outputs[0][1])["source"]["topic"] == "in"
    [(key, value, headers)] = backend.read(settings.kafka.dlq_topic, 1)
    assert (key, value, list(headers)) == (b"k", b"\xff", [("error.type", b"not_utf8")])
    producer.close(5)


def test_produce_step_holds_at_most_its_buffer_of_unacknowledged_outputs(backend):
    settings = settings_for(backend)
    producer = backend.producer(settings)
    step = ProduceStep(producer, Collect(), output_topic=settings.kafka.output_topic,
                       max_buffer_bytes=1, wakeup=threading.Event())
    step.submit(labelled("first", 0))  # always room for one
    deadline = time.monotonic() + 30
    while step.unacknowledged():
        assert time.monotonic() < deadline
        step.poll()
        try:
            step.submit(labelled("second", 1))
            break
        except MessageRejected:
            time.sleep(0.01)
    producer.close(5)


def test_produce_step_to_a_missing_topic_fails_clearly_and_creates_nothing(backend):
    settings = settings_for(backend)
    missing = f"{settings.kafka.output_topic}-missing"
    producer = backend.producer(settings, max_block_ms=1000)
    step = ProduceStep(producer, Collect(), output_topic=missing, max_buffer_bytes=1 << 20,
                       wakeup=threading.Event())
    with pytest.raises(DeliveryFailed, match=f"delivery to topic {missing} failed"):
        step.submit(labelled("doc", 0))
    producer.close(5)
    assert not backend.exists(missing)  # never auto-created, although the local broker allows it


def test_commit_step_commits_the_contiguous_watermark_only(backend):
    settings = settings_for(backend)
    topic = settings.kafka.input_topic
    backend.produce(topic, [(b"k", b"v")] * 6)
    consumer = backend.joined(backend.consumer(settings), topic)
    partition = sorted(consumer.assignment())[0]
    registry = InFlightRegistry(WorkerMetrics())
    items = []
    for offset in range(5):
        item = WorkItem(SourceRef(topic=topic, partition=partition.partition, offset=offset), 0.0)
        registry.add(partition, item)
        items.append(item)
    step = CommitStep(registry, consumer, metadata="worker-1", interval_s=0.05, timeout_s=10)
    for offset in (0, 1, 3):
        step.submit(items[offset])
    assert step.commit_now()
    assert backend.committed(settings.consumer.group_id, topic) == {partition.partition: 2}
    for offset in (2, 4):
        step.submit(items[offset])
    deadline = time.monotonic() + 30
    while registry.committed(partition) != 5:  # the periodic, asynchronous commit
        assert time.monotonic() < deadline
        step.poll()
        consumer.poll(timeout_ms=0)
        time.sleep(0.06)
    assert backend.committed(settings.consumer.group_id, topic) == {partition.partition: 5}
    consumer.close(autocommit=False)


def test_processor_labels_every_record_once_and_commits_the_end_offsets(backend):
    settings = settings_for(backend)
    topic = settings.kafka.input_topic
    sent = [(f"doc-{i}".encode(), orjson.dumps({"id": f"doc-{i}", "text": "fish"}))
            for i in range(60)]
    sent.append((b"poison", b"not json"))
    backend.produce(topic, sent)
    metrics = WorkerMetrics()
    processor = build_processor(
        settings, engine=FakeEngine(reverse=True), consumer=backend.consumer(settings),
        producer=backend.producer(settings), metrics=metrics,
        health=HealthState(60), progress=Progress(metrics))
    finished = metrics.registry.get_sample_value

    def stop_when_done() -> None:
        deadline = time.monotonic() + 60
        while (finished("eurovoc_documents_produced_total") or 0) < 60 and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        processor.request_stop("done")

    threading.Thread(target=stop_when_done, daemon=True).start()
    outcome = processor.run()
    assert outcome.exit_code == ExitCode.OK
    outputs = backend.read(settings.kafka.output_topic, 60)
    assert sorted(key for key, _, _ in outputs) == sorted(key for key, _ in sent[:60])
    assert [key for key, _, _ in backend.read(settings.kafka.dlq_topic, 1)] == [b"poison"]
    assert backend.committed(settings.consumer.group_id, topic) == backend.end_offsets(topic)
    assert finished("eurovoc_documents_dead_lettered_total", {"reason": "not_json"}) == 1

