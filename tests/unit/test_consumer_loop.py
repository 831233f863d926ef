"""The loop's logic with a fake consumer, engine and producer (no broker, no model)."""

from __future__ import annotations

import time
from collections import namedtuple
from datetime import UTC, datetime

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.structs import ConsumerGroupMetadata, MemberState

from schemas.dead_letter import DeadLetterHeaders
from schemas.labels import LabelsMessage, ModelInfo
from worker.config import load_settings
from worker.consumer_loop import ConsumerLoop, DeliveryRetries, ExitCode
from worker.work_items import WorkResult
from worker.metrics import WorkerMetrics
from worker.rebalance import QueueingRebalanceListener
from worker.sink import Sink

Record = namedtuple("Record", "offset key value headers", defaults=[()])
TOPIC = "docs"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def doc(i: int) -> bytes:
    return orjson.dumps({"id": f"d{i}", "text": "fish and milk"})


class FakeConsumer:
    def __init__(self, data: dict[TopicPartition, list[bytes]]):
        self.data = {tp: [Record(o, f"k{o}".encode(), v) for o, v in enumerate(values)]
                     for tp, values in data.items()}
        self.positions = {tp: 0 for tp in data}
        self.assigned: set[TopicPartition] = set()
        self.paused_set: set[TopicPartition] = set()
        self.commits: list[dict] = []
        self.listener = None
        self.polls = 0
        self.on_poll = None
        self.pending_events: list = [("assigned", set(data))]
        self.closed = False

    def subscribe(self, topics, listener):
        self.listener = listener

    def poll(self, timeout_ms=0, max_records=500):
        self.polls += 1
        while self.pending_events:
            kind, partitions = self.pending_events.pop(0)
            if kind == "assigned":
                self.assigned |= partitions
                self.listener.on_partitions_assigned(partitions)
            elif kind == "revoked":
                self.assigned -= partitions
                self.paused_set -= partitions
                self.listener.on_partitions_revoked(partitions)
            else:
                self.assigned -= partitions
                self.listener.on_partitions_lost(partitions)
        if self.on_poll is not None:
            self.on_poll(self)
        out = {}
        for tp in sorted(self.assigned):
            if tp in self.paused_set or max_records <= 0:
                continue
            batch = self.data[tp][self.positions[tp]:self.positions[tp] + max_records]
            if batch:
                out[tp] = batch
                self.positions[tp] += len(batch)
                max_records -= len(batch)
        return out

    def pause(self, *tps):
        self.paused_set |= set(tps)

    def resume(self, *tps):
        self.paused_set -= set(tps)

    def paused(self):
        return set(self.paused_set)

    def assignment(self):
        return set(self.assigned)

    def commit(self, offsets, timeout_ms=None):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def committed_now(self) -> dict:
        merged = {}
        for commit in self.commits:
            merged.update(commit)
        return merged

    def highwater(self, tp):
        return len(self.data[tp])

    def position(self, tp, timeout_ms=None):
        return self.positions[tp]

    def group_metadata(self):
        return ConsumerGroupMetadata("g", 1, "m", None, MemberState.STABLE)

    def close(self, autocommit=True, timeout_ms=None):
        self.closed = True


class FakeEngine:
    """Scores on demand: ``release(n)`` finishes the n oldest documents (optionally reversed)."""

    def __init__(self, auto: bool = True, reverse: bool = False, fail_ids=()):
        self.auto, self.reverse, self.fail_ids = auto, reverse, set(fail_ids)
        self.queue: list = []
        self.ready: list = []
        self.discarded = 0

    def submit(self, items):
        self.queue.extend(items)
        if self.auto:
            self.release(len(self.queue))

    def release(self, n: int) -> None:
        taken, self.queue = self.queue[:n], self.queue[n:]
        if self.reverse:
            taken.reverse()
        for item in taken:
            if item.document.id in self.fail_ids:
                self.ready.append(WorkResult(item, None, "boom"))
                continue
            message = LabelsMessage(
                id=item.document.id, labels=[], scores={}, thresholds={},
                model=ModelInfo(name="m", version="1", sha256="0" * 64),
                truncated=False, chunks=1, tokens=3, source=item.source,
                produced_at=datetime.now(UTC),
            )
            self.ready.append(WorkResult(item, message, None))

    def poll_results(self, timeout: float = 0.0):
        out, self.ready = self.ready, []
        return out

    def pending(self):
        return len(self.queue) + len(self.ready)

    def discard(self, predicate):
        before = len(self.queue)
        self.queue = [item for item in self.queue if not predicate(item)]
        self.ready = [r for r in self.ready if not predicate(r.item)]
        self.discarded += before - len(self.queue)
        return before - len(self.queue)

    def healthy(self):
        return True


class FakeProducer:
    def __init__(self, auto: bool = True, fail_first: int = 0):
        self.auto = auto
        self.fail_first = fail_first
        self.sent: list = []
        self.held: list = []

    def send(self, topic, value=None, key=None, headers=None):
        future = Future()
        self.sent.append((topic, key, value, headers))
        if self.fail_first > 0:
            self.fail_first -= 1
            future.failure(KafkaTimeoutError("delivery timed out"))
        elif self.auto:
            future.success(None)
        else:
            self.held.append(future)
        return future

    def ack_all(self):
        held, self.held = self.held, []
        for future in held:
            future.success(None)

    def flush(self, timeout=None):
        self.ack_all()

    def close(self, timeout=None):
        pass


def make_loop(consumer, engine, producer, **overrides):
    values = dict(
        bootstrap_servers="x:1", input_topic=TOPIC, output_topic="out", dlq_topic="dlq",
        group_id="g", model="/m", commit_interval_ms=10, drain_timeout_s=2,
        revoke_timeout_s=0.5, metrics_port=-1,
    )
    settings = load_settings(**{**values, **overrides})
    metrics = WorkerMetrics()
    loop = ConsumerLoop(settings, consumer, Sink(producer), engine, metrics,
                        QueueingRebalanceListener())
    return loop, metrics


def stop_when(predicate):
    def hook(consumer):
        if predicate(consumer):
            consumer.loop.request_stop("test")
    return hook


def run(loop, consumer, predicate=lambda c: c.polls > 50):
    consumer.loop = loop
    consumer.on_poll = stop_when(predicate)
    return loop.run()


def outputs(producer, topic="out"):
    return [orjson.loads(value)["id"] for t, _, value, _ in producer.sent if t == topic]


def test_out_of_order_results_commit_only_the_contiguous_prefix():
    consumer = FakeConsumer({P0: [doc(i) for i in range(10)]})
    engine = FakeEngine(auto=False, reverse=True)
    producer = FakeProducer()
    loop, metrics = make_loop(consumer, engine, producer)
    consumer.loop = loop
    consumer.on_poll = None
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    loop._iterate()  # assigned + 10 records submitted
    assert loop.in_flight == 10
    engine.release(len(engine.queue) - 1)  # all but the first (offset 0), newest first
    for _ in range(3):
        loop._iterate()
    assert loop.in_flight == 1
    assert all(P0 not in commit for commit in consumer.commits)  # nothing committable yet
    engine.release(1)
    outcome = run(loop, consumer)
    assert outcome.exit_code == ExitCode.OK
    assert consumer.committed_now() == {P0: 10}
    assert sorted(outputs(producer)) == sorted(f"d{i}" for i in range(10))
    assert metrics.produced._value.get() == 10


def test_backpressure_pauses_and_resumes_while_polling_on():
    consumer = FakeConsumer({P0: [doc(i) for i in range(30)], P1: [doc(100 + i) for i in range(30)]})
    engine = FakeEngine(auto=False)
    producer = FakeProducer()
    loop, metrics = make_loop(consumer, engine, producer, max_in_flight=8, max_queued_documents=8)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    for _ in range(5):
        loop._iterate()
    assert loop.in_flight == 8
    assert consumer.paused_set == {P0, P1}
    assert metrics.paused_partitions._value.get() == 2
    polls = consumer.polls
    loop._iterate()
    assert consumer.polls == polls + 1  # still polling while paused
    engine.release(3)
    loop._iterate()
    loop._iterate()
    assert consumer.paused_set == {P0, P1}  # 5 in flight: above half (4)
    engine.release(1)
    loop._iterate()
    loop._iterate()
    assert consumer.paused_set == set()
    engine.auto = True
    engine.release(len(engine.queue))
    outcome = run(loop, consumer, lambda c: c.positions == {P0: 30, P1: 30} and c.polls > 60)
    assert outcome.exit_code == ExitCode.OK
    assert consumer.committed_now() == {P0: 30, P1: 30}
    assert len(outputs(producer)) == 60


def test_revoke_finishes_and_commits_before_the_next_poll():
    consumer = FakeConsumer({P0: [doc(i) for i in range(5)], P1: [doc(10 + i) for i in range(5)]})
    engine = FakeEngine(auto=False)
    producer = FakeProducer(auto=False)
    loop, _ = make_loop(consumer, engine, producer)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    loop._iterate()
    assert loop.in_flight == 10

    # While the loop finishes the revoked partition, the engine and the producer complete.
    finish_calls = []
    real_poll_results = engine.poll_results

    def poll_results(timeout=0.0):
        finish_calls.append(consumer.polls)
        engine.release(len(engine.queue))
        producer.ack_all()
        return real_poll_results(timeout)

    engine.poll_results = poll_results
    consumer.pending_events.append(("revoked", {P1}))
    polls_before = consumer.polls
    loop._iterate()  # poll delivers the revoke; the loop drains P1 inside this iteration
    assert consumer.polls == polls_before + 1
    assert consumer.commits and consumer.commits[-1] == {P1: 5}
    assert all(tp == P0 for tp, _ in loop._pending)
    assert P1 not in loop._assigned


def test_revoke_past_the_deadline_discards_uncommitted():
    consumer = FakeConsumer({P0: [doc(i) for i in range(4)]})
    engine = FakeEngine(auto=False)
    producer = FakeProducer()
    loop, _ = make_loop(consumer, engine, producer)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    loop._iterate()
    engine.release(1)  # offset 0 done; 1..3 stuck in the model
    consumer.pending_events.append(("revoked", {P0}))
    loop._iterate()
    assert consumer.committed_now() == {P0: 1}
    assert engine.discarded == 3
    assert loop.in_flight == 0


def test_lost_partitions_are_dropped_without_commit():
    consumer = FakeConsumer({P0: [doc(i) for i in range(4)]})
    engine = FakeEngine(auto=False)
    producer = FakeProducer()
    loop, _ = make_loop(consumer, engine, producer)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    loop._iterate()
    consumer.pending_events.append(("lost", {P0}))
    loop._iterate()
    assert consumer.commits == []
    assert loop.in_flight == 0 and engine.discarded == 4
    engine.release(4)  # nothing of the lost partition comes back
    loop._iterate()
    assert producer.sent == []


def test_delivery_failure_is_retried():
    consumer = FakeConsumer({P0: [doc(i) for i in range(3)]})
    producer = FakeProducer(fail_first=1)
    loop, _ = make_loop(consumer, FakeEngine(), producer)
    outcome = run(loop, consumer, lambda c: c.polls > 5 and not loop._retry and loop.in_flight == 0)
    assert outcome.exit_code == ExitCode.OK
    assert consumer.committed_now() == {P0: 3}
    assert sorted(outputs(producer)) == ["d0", "d0", "d1", "d2"]  # d0 sent twice


def test_delivery_failure_for_good_stops_the_worker_with_earlier_work_committed():
    consumer = FakeConsumer({P0: [doc(i) for i in range(3)]})
    producer = FakeProducer(fail_first=1)
    loop, _ = make_loop(consumer, FakeEngine(), producer, delivery_retries=0)
    outcome = run(loop, consumer)
    assert outcome.exit_code == ExitCode.FATAL
    assert "delivery to topic out failed" in outcome.message
    assert consumer.committed_now().get(P0, 0) == 0  # offset 0 never acknowledged
    assert consumer.closed


def test_bad_records_are_dead_lettered_and_committed():
    values = [doc(0), b"not json", b"\xff", doc(3), orjson.dumps({"id": "e", "text": ""})]
    consumer = FakeConsumer({P0: values})
    producer = FakeProducer()
    loop, metrics = make_loop(consumer, FakeEngine(fail_ids={"d3"}), producer)
    outcome = run(loop, consumer)
    assert outcome.exit_code == ExitCode.OK
    assert consumer.committed_now() == {P0: 5}
    dead = [(key, value, dict(headers)) for topic, key, value, headers in producer.sent
            if topic == "dlq"]
    assert [h["error.type"] for _, _, h in dead] == [
        b"not_json", b"not_utf8", b"empty_message", b"inference_failed"]
    assert dead[0][:2] == (b"k1", b"not json")
    assert outputs(producer) == ["d0"]
    assert metrics.dead_lettered.labels("not_utf8")._value.get() == 1


def test_a_replayed_records_count_is_carried_into_its_new_dead_letter():
    consumer = FakeConsumer({P0: [b"not json", doc(1), doc(2)]})
    replayed = [("replay.count", b"2"), ("other", b"x")]
    consumer.data[P0] = [record._replace(headers=replayed) for record in consumer.data[P0][:2]] + [
        consumer.data[P0][2]._replace(headers=[("replay.count", b"junk")])]
    producer = FakeProducer()
    loop, _ = make_loop(consumer, FakeEngine(fail_ids={"d1", "d2"}), producer)
    assert run(loop, consumer).exit_code == ExitCode.OK
    dead = [DeadLetterHeaders.from_kafka_headers(headers) for topic, _, _, headers in producer.sent
            if topic == "dlq"]
    assert [(h.error_type.value, h.replay_count, h.schema_version) for h in dead] == [
        ("not_json", 2, 2), ("inference_failed", 2, 2), ("inference_failed", 0, 2)]


def test_dlq_limit_stops_with_exit_3_and_commits_only_before_the_trip():
    values = [doc(0), doc(1)] + [b"junk"] * 10
    consumer = FakeConsumer({P0: values})
    producer = FakeProducer()
    loop, _ = make_loop(consumer, FakeEngine(), producer, dlq_max_consecutive=4)
    outcome = run(loop, consumer, lambda c: False)
    assert outcome.exit_code == ExitCode.DLQ_LIMIT
    assert "4 consecutive" in outcome.message
    # two good + three dead letters handled; the fourth bad record tripped the limit
    assert consumer.committed_now() == {P0: 5}


def test_stop_drains_in_flight_work_then_commits():
    consumer = FakeConsumer({P0: [doc(i) for i in range(6)]})
    engine = FakeEngine(auto=False)
    producer = FakeProducer()
    loop, _ = make_loop(consumer, engine, producer)

    def hook(c):
        if c.polls == 2:
            loop.request_stop("SIGTERM")
        if c.polls == 5:
            engine.release(6)  # the model finishes during the drain

    consumer.on_poll = hook
    outcome = loop.run()
    assert outcome.exit_code == ExitCode.OK and outcome.message == "SIGTERM"
    assert consumer.committed_now() == {P0: 6}
    assert consumer.paused_set == {P0}  # fetching stopped at once
    assert consumer.closed


def test_stop_past_the_drain_deadline_leaves_work_uncommitted():
    consumer = FakeConsumer({P0: [doc(i) for i in range(3)]})
    engine = FakeEngine(auto=False)
    loop, _ = make_loop(consumer, engine, FakeProducer(), drain_timeout_s=0.2)
    consumer.on_poll = lambda c: loop.request_stop("SIGTERM") if c.polls == 2 else None
    outcome = loop.run()
    assert outcome.exit_code == ExitCode.OK
    assert consumer.commits == []
    assert engine.discarded == 3


@pytest.mark.parametrize("strategy", ["range"])
def test_eager_rebalance_keeps_partitions_that_stay(strategy):
    consumer = FakeConsumer({P0: [doc(i) for i in range(3)], P1: [doc(10 + i) for i in range(3)]})
    engine = FakeEngine(auto=False)
    producer = FakeProducer()
    loop, _ = make_loop(consumer, engine, producer, assignment_strategy=strategy)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    loop._iterate()
    consumer.pending_events += [("revoked", {P0, P1}), ("assigned", {P0})]
    loop._iterate()
    assert {tp for tp, _ in loop._pending} == {P0}  # P1 moved away: dropped uncommitted
    engine.auto = True
    engine.release(len(engine.queue))
    outcome = run(loop, consumer)
    assert outcome.exit_code == ExitCode.OK
    assert consumer.committed_now() == {P0: 3}


def test_pauses_are_reapplied_to_partitions_assigned_while_paused():
    P2 = TopicPartition(TOPIC, 2)
    consumer = FakeConsumer({P0: [doc(i) for i in range(20)], P1: [doc(100 + i) for i in range(20)],
                             P2: [doc(200 + i) for i in range(20)]})
    consumer.pending_events = [("assigned", {P0, P1})]
    engine = FakeEngine(auto=False)
    loop, metrics = make_loop(consumer, engine, FakeProducer(), max_in_flight=8,
                              max_queued_documents=8)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    for _ in range(3):
        loop._iterate()
    assert consumer.paused_set == {P0, P1}
    consumer.pending_events.append(("assigned", {P2}))  # a cooperative rebalance adds P2
    loop._iterate()
    assert consumer.paused_set == {P0, P1, P2}
    assert consumer.positions[P2] <= 1  # nothing (at most the poll's single record) fetched
    assert metrics.paused_partitions._value.get() == 3


def test_a_revoke_while_draining_ends_at_the_drain_deadline():
    consumer = FakeConsumer({P0: [doc(i) for i in range(3)], P1: [doc(10 + i) for i in range(3)]})
    engine = FakeEngine(auto=False)  # the model never finishes
    loop, _ = make_loop(consumer, engine, FakeProducer(), drain_timeout_s=0.3,
                        revoke_timeout_s=10)

    def hook(c):
        if c.polls == 2:
            loop.request_stop("SIGTERM")
        if c.polls == 3:
            c.pending_events.append(("revoked", {P1}))

    consumer.on_poll = hook
    started = time.monotonic()
    outcome = loop.run()
    assert outcome.exit_code == ExitCode.OK
    assert time.monotonic() - started < 3  # not the 10 s revoke timeout
    assert consumer.commits == []
    assert engine.discarded == 6


def test_delivery_retries_follow_a_bounded_tenacity_policy():
    retries = DeliveryRetries(3)
    state, delays = None, []
    for _ in range(4):
        state, delay = retries.failed(state, KafkaTimeoutError("delivery timed out"))
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, None]  # three retries, then give up
    assert state.attempt_number == 4
    assert DeliveryRetries(0).failed(None, KafkaTimeoutError("x"))[1] is None


def test_an_unacknowledged_retry_holds_back_the_commit_of_its_partition():
    consumer = FakeConsumer({P0: [doc(i) for i in range(3)], P1: [doc(10 + i) for i in range(3)]})
    producer = FakeProducer(fail_first=1)  # the first send (P0 offset 0) fails once
    loop, _ = make_loop(consumer, FakeEngine(), producer)
    loop._consumer.subscribe([TOPIC], listener=loop._listener)
    for _ in range(5):
        loop._iterate()
        time.sleep(0.02)
    assert loop._retry  # the retry waits for its 0.5 s backoff
    assert consumer.committed_now() == {P1: 3}  # P0 held at its unacknowledged offset 0
    outcome = run(loop, consumer, lambda c: not loop._retry and loop.in_flight == 0)
    assert outcome.exit_code == ExitCode.OK
    assert consumer.committed_now() == {P0: 3, P1: 3}
