"""The processor and its chain of steps on the in-memory Kafka and a fake engine (no broker, no
model): watermarks, backpressure, rebalances, dead letters, delivery failures, stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import pytest
from kafka import TopicPartition

from schemas.dead_letter import DeadLetterHeaders
from tests.fake_engine import FakeEngine
from tests.fake_kafka import (
    FakeBroker,
    FakeConsumer,
    FakeProducer,
    FakeTransactionalProducer,
)
from worker.app import build_processor
from worker.kafka.clients import producer_config
from worker.pipeline.processor import ExitCode, StreamProcessor
from worker.pipeline.progress import Progress
from worker.runtime.http_endpoints import HealthState
from worker.runtime.metrics import WorkerMetrics
from worker.settings.worker_settings import load_settings

TOPIC = "docs"
P0, P1, P2 = (TopicPartition(TOPIC, p) for p in range(3))


def doc(i: int) -> bytes:
    return orjson.dumps({"id": f"d{i}", "text": "fish and milk"})


@dataclass
class Rig:
    processor: StreamProcessor
    broker: FakeBroker
    consumer: FakeConsumer
    producer: FakeProducer
    engine: FakeEngine
    metrics: WorkerMetrics
    health: HealthState
    progress: Progress

    def outputs(self, topic: str = "out") -> list[str]:
        return [orjson.loads(value)["id"] for t, _, value, _ in self.producer.sent if t == topic]

    def metric(self, name: str, **labels) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def run(self, until=lambda consumer: consumer.polls > 50):
        def hook(consumer: FakeConsumer) -> None:
            if until(consumer):
                self.processor.request_stop("test")

        self.consumer.on_poll = hook
        return self.processor.run()

    def start(self, iterations: int = 1) -> None:
        """Subscribe as ``run`` does, then run ``iterations`` loop iterations."""
        self.processor.subscribe()
        for _ in range(iterations):
            self.processor.run_once()


def make(data: dict[int, list[bytes]], *, engine: FakeEngine | None = None,
         producer: dict | None = None, **overrides) -> Rig:
    broker = FakeBroker()
    broker.create_topic(TOPIC, max(data) + 1)
    for topic in ("out", "dlq"):
        broker.create_topic(topic)
    for partition, values in data.items():
        for index, value in enumerate(values):
            broker.append(TOPIC, partition, f"k{index}".encode(), value)
    consumer = FakeConsumer(broker, "g", TOPIC, assign=data)
    engine = engine or FakeEngine()
    transactional = overrides.get("delivery") == "exactly-once"
    fake_producer = (FakeTransactionalProducer if transactional else FakeProducer)(
        broker, **(producer or {}))
    values = dict(
        bootstrap_servers="x:1", input_topic=TOPIC, output_topic="out", dlq_topic="dlq",
        group_id="g", model="/m", commit_interval_ms=10, drain_timeout_s=2,
        revoke_timeout_s=0.5, metrics_port=-1, poll_timeout_ms=1,
    )
    settings = load_settings(**{**values, **overrides})
    metrics = WorkerMetrics()
    health = HealthState(settings.operations.stall_timeout_s)
    progress = Progress(metrics)
    processor = build_processor(settings, engine=engine, consumer=consumer,
                                producer=fake_producer, metrics=metrics, health=health,
                                progress=progress)
    return Rig(processor, broker, consumer, fake_producer, engine, metrics, health, progress)


def test_out_of_order_results_commit_only_the_contiguous_prefix():
    rig = make({0: [doc(i) for i in range(10)]}, engine=FakeEngine(auto=False, reverse=True))
    rig.start()  # assigned + 10 records submitted
    assert rig.processor.registry.count() == 10
    rig.engine.finish([f"d{i}" for i in range(9, 0, -1)])  # all but offset 0, newest first
    for _ in range(3):
        rig.processor.run_once()
    assert rig.processor.registry.count() == 1
    assert all(P0 not in commit for commit in rig.consumer.commits)  # nothing committable yet
    rig.engine.release(1)
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.OK
    assert rig.consumer.committed_now() == {P0: 10}
    assert sorted(rig.outputs()) == sorted(f"d{i}" for i in range(10))
    assert rig.metric("eurovoc_documents_produced_total") == 10


def test_backpressure_pauses_while_a_step_is_full_and_polling_goes_on():
    rig = make({0: [doc(i) for i in range(30)], 1: [doc(100 + i) for i in range(30)]},
               engine=FakeEngine(auto=False), max_in_flight=8)
    rig.start(3)
    assert rig.engine.pending() == 8  # the classify step's capacity; the rest is held
    assert rig.consumer.paused_set == {P0, P1}
    assert rig.metric("eurovoc_paused_partitions") == 2
    assert rig.metric("eurovoc_paused_seconds") > 0
    polls = rig.consumer.polls
    rig.processor.run_once()
    assert rig.consumer.polls == polls + 1  # still polling while paused
    rig.engine.release(3)
    rig.processor.run_once()  # the results go on...
    rig.processor.run_once()  # ...and three held records take their place
    assert rig.engine.pending() == 8 and rig.consumer.paused_set == {P0, P1}
    rig.engine.auto = True
    rig.engine.release(len(rig.engine.queue))
    outcome = rig.run(lambda c: c.positions == {P0: 30, P1: 30} and c.polls > 60)
    assert outcome.exit_code == ExitCode.OK
    assert rig.consumer.committed_now() == {P0: 30, P1: 30}
    assert len(rig.outputs()) == 60


def test_partitions_resume_once_every_held_record_was_taken():
    rig = make({0: [doc(i) for i in range(12)]}, engine=FakeEngine(auto=False),
               max_in_flight=8, max_poll_records=10)
    rig.start(2)
    assert rig.consumer.paused_set == {P0}
    rig.engine.release(8)
    for _ in range(3):
        rig.processor.run_once()
    assert rig.consumer.paused_set == set()  # the two held ones went in: fetching again
    assert rig.metric("eurovoc_paused_partitions") == 0
    assert rig.metric("eurovoc_paused_seconds") == 0


def test_revoke_finishes_and_commits_before_the_next_poll():
    rig = make({0: [doc(i) for i in range(5)], 1: [doc(10 + i) for i in range(5)]},
               engine=FakeEngine(auto=False), producer={"auto": False})
    rig.start()
    assert rig.processor.registry.count() == 10
    finished = []

    def poll_results(timeout=0.0, real=rig.engine.poll_results):
        # While the processor finishes the revoked partition, the model and broker complete.
        finished.append(rig.consumer.polls)
        rig.engine.release(len(rig.engine.queue))
        rig.producer.ack_all()
        return real(timeout)

    rig.engine.poll_results = poll_results
    rig.consumer.events.append(("revoked", {P1}))
    polls_before = rig.consumer.polls
    rig.processor.run_once()  # poll delivers the revoke; P1 is finished inside this iteration
    assert rig.consumer.polls == polls_before + 1
    assert rig.consumer.commits and rig.consumer.commits[-1] == {P1: 5}
    assert rig.processor.registry.partitions() == [P0]


def test_revoke_past_the_deadline_drops_the_rest_uncommitted():
    rig = make({0: [doc(i) for i in range(4)]}, engine=FakeEngine(auto=False))
    rig.start()
    rig.engine.release(1)  # offset 0 done; 1..3 stuck in the model
    rig.consumer.events.append(("revoked", {P0}))
    rig.processor.run_once()
    assert rig.consumer.committed_now() == {P0: 1}
    assert rig.engine.pending() == 0  # the three were cancelled: the engine drops them
    assert rig.processor.registry.count() == 0


def test_lost_partitions_are_dropped_without_commit():
    rig = make({0: [doc(i) for i in range(4)]}, engine=FakeEngine(auto=False))
    rig.start()
    rig.consumer.events.append(("lost", {P0}))
    rig.processor.run_once()
    assert rig.consumer.commits == []
    assert rig.processor.registry.count() == 0 and rig.engine.pending() == 0
    rig.engine.release(4)  # nothing of the lost partition comes back
    rig.processor.run_once()
    assert rig.producer.sent == []


def test_a_failed_delivery_is_not_resent_and_stops_the_worker():
    # The idempotent producer retried it in order until delivery_timeout_ms: re-sending it
    # would put it behind later outputs of the same key (fault 6).
    rig = make({0: [doc(i) for i in range(3)]}, producer={"fail_first": 1})
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.FATAL
    assert "delivery to topic out failed" in outcome.message and "docs/0@0" in outcome.message
    assert rig.outputs().count("d0") == 1
    assert rig.consumer.committed_now().get(P0, 0) == 0  # offset 0 never acknowledged
    assert rig.consumer.closed


def test_a_failed_delivery_commits_what_was_acknowledged_before_it():
    rig = make({0: [doc(i) for i in range(2)], 1: [doc(10 + i) for i in range(2)]},
               producer={"auto": False})
    rig.start()
    rig.producer.ack_all(skip=lambda topic, key: key == b"d1")  # everything but P0@1

    def fail_d1(consumer):
        for future, _, key, *_ in rig.producer.held:
            if key == b"d1" and not future.is_done:
                future.failure(TimeoutError("delivery timed out"))

    rig.consumer.on_poll = fail_d1
    outcome = rig.processor.run()
    assert outcome.exit_code == ExitCode.FATAL
    assert rig.consumer.committed_now() == {P0: 1, P1: 2}


def test_deliveries_are_retried_by_the_idempotent_producer_only():
    settings = load_settings(bootstrap_servers="x:1", input_topic="a", output_topic="b",
                             dlq_topic="c", group_id="g", model="/m", delivery_timeout_ms=45_000)
    config = producer_config(settings)
    assert (config["enable_idempotence"], config["acks"]) == (True, "all")
    assert config["delivery_timeout_ms"] == 45_000
    assert config["max_in_flight_requests_per_connection"] <= 5  # order kept by idempotence
    with pytest.raises(ValueError, match="delivery_retries was removed"):
        load_settings(**settings.model_dump(mode="python"), delivery_retries=3)


def test_bad_records_are_dead_lettered_and_committed():
    values = [doc(0), b"not json", b"\xff", doc(3), orjson.dumps({"id": "e", "text": ""})]
    rig = make({0: values}, engine=FakeEngine(fail_ids={"d3"}))
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.OK
    assert rig.consumer.committed_now() == {P0: 5}
    dead = [(key, value, dict(headers)) for topic, key, value, headers in rig.producer.sent
            if topic == "dlq"]
    assert sorted(h["error.type"] for _, _, h in dead) == sorted([
        b"not_json", b"not_utf8", b"empty_message", b"inference_failed"])
    assert (b"k1", b"not json") in [(key, value) for key, value, _ in dead]
    assert rig.outputs() == ["d0"]
    assert rig.metric("eurovoc_documents_dead_lettered_total", reason="not_utf8") == 1


def test_a_replayed_records_count_is_carried_into_its_new_dead_letter():
    rig = make({0: [b"not json", doc(1), doc(2)]}, engine=FakeEngine(fail_ids={"d1", "d2"}))
    log = rig.broker.topics[TOPIC][0]
    replayed = [("replay.count", b"2"), ("other", b"x")]
    log[:] = [log[0]._replace(headers=replayed), log[1]._replace(headers=replayed),
              log[2]._replace(headers=[("replay.count", b"junk")])]
    assert rig.run().exit_code == ExitCode.OK
    dead = sorted((DeadLetterHeaders.from_kafka_headers(headers) for topic, _, _, headers
                   in rig.producer.sent if topic == "dlq"), key=lambda h: h.source_offset)
    assert [(h.error_type.value, h.replay_count, h.schema_version) for h in dead] == [
        ("not_json", 2, 2), ("inference_failed", 2, 2), ("invalid_header", 0, 2)]


def test_dlq_limit_stops_with_exit_3_and_commits_only_before_the_trip():
    rig = make({0: [doc(0), doc(1)] + [b"junk"] * 10}, dlq_max_consecutive=4)
    outcome = rig.run(lambda c: False)
    assert outcome.exit_code == ExitCode.DLQ_LIMIT
    assert "4 consecutive" in outcome.message
    # two good + three dead letters handled; the fourth bad record tripped the limit
    assert rig.consumer.committed_now() == {P0: 5}


def test_the_dead_letter_ratio_counts_each_record_once():
    # Fault 1: an inference failure used to count as good at decode and bad at its result,
    # so with a model failing everything the ratio stayed at 50 % and 0.8 never tripped.
    # One record per poll interleaves decoding and results as a steady stream does.
    ids = [f"d{i}" for i in range(40)]
    rig = make({0: [doc(i) for i in range(40)]}, engine=FakeEngine(fail_ids=ids),
               dlq_max_consecutive=0, dlq_max_ratio=0.8, dlq_ratio_window=10,
               max_poll_records=1)
    outcome = rig.run(lambda c: False)
    assert outcome.exit_code == ExitCode.DLQ_LIMIT
    assert "10 of the last 10" in outcome.message
    assert rig.consumer.committed_now().get(P0, 0) == 9  # nine dead letters, then the trip


def test_the_consecutive_limit_is_not_reset_by_decoding():
    rig = make({0: [doc(i) for i in range(40)]},
               engine=FakeEngine(fail_ids=[f"d{i}" for i in range(40)]),
               dlq_max_consecutive=5, dlq_max_ratio=1.0, max_poll_records=1)
    outcome = rig.run(lambda c: False)
    assert outcome.exit_code == ExitCode.DLQ_LIMIT and "5 consecutive" in outcome.message
    assert rig.consumer.committed_now().get(P0, 0) == 4


def test_stop_drains_in_flight_work_then_commits():
    rig = make({0: [doc(i) for i in range(6)]}, engine=FakeEngine(auto=False))

    def hook(consumer):
        if consumer.polls == 2:
            rig.processor.request_stop("SIGTERM")
            rig.engine.release(6)  # the model finishes during the drain

    rig.consumer.on_poll = hook
    outcome = rig.processor.run()
    assert outcome.exit_code == ExitCode.OK and outcome.message == "SIGTERM"
    assert rig.consumer.committed_now() == {P0: 6}
    assert rig.consumer.paused_set == {P0}  # fetching stopped at once
    assert rig.consumer.closed


def test_stop_past_the_drain_deadline_leaves_work_uncommitted():
    rig = make({0: [doc(i) for i in range(3)]}, engine=FakeEngine(auto=False),
               drain_timeout_s=0.2)
    rig.consumer.on_poll = lambda c: rig.processor.request_stop("SIGTERM") if c.polls == 2 else None
    started = time.monotonic()
    outcome = rig.processor.run()
    assert outcome.exit_code == ExitCode.OK
    assert time.monotonic() - started < 2
    assert rig.consumer.commits == []
    assert rig.engine.pending() == 0  # cancelled on the way out


@pytest.mark.parametrize("strategy", ["range"])
def test_eager_rebalance_keeps_partitions_that_stay(strategy):
    rig = make({0: [doc(i) for i in range(3)], 1: [doc(10 + i) for i in range(3)]},
               engine=FakeEngine(auto=False), assignment_strategy=strategy)
    rig.start()
    rig.consumer.events += [("revoked", {P0, P1}), ("assigned", {P0})]
    rig.processor.run_once()
    assert rig.processor.registry.partitions() == [P0]  # P1 moved away: dropped uncommitted
    rig.engine.auto = True
    rig.engine.release(len(rig.engine.queue))
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.OK
    assert rig.consumer.committed_now() == {P0: 3}


def test_pauses_are_reapplied_to_partitions_assigned_while_paused():
    rig = make({0: [doc(i) for i in range(20)], 1: [doc(100 + i) for i in range(20)],
                2: [doc(200 + i) for i in range(20)]}, engine=FakeEngine(auto=False),
               max_in_flight=8)
    rig.consumer.events = [("assigned", {P0, P1})]
    rig.start(3)
    assert rig.consumer.paused_set == {P0, P1}
    rig.consumer.events.append(("assigned", {P2}))  # a cooperative rebalance adds P2
    rig.processor.run_once()
    assert rig.consumer.paused_set == {P0, P1, P2}
    assert rig.metric("eurovoc_paused_partitions") == 3


def test_a_revoke_while_stopping_ends_at_the_drain_deadline():
    rig = make({0: [doc(i) for i in range(3)], 1: [doc(10 + i) for i in range(3)]},
               engine=FakeEngine(auto=False), drain_timeout_s=0.3, revoke_timeout_s=10)

    def hook(consumer):
        if consumer.polls == 2:
            rig.processor.request_stop("SIGTERM")
            consumer.events.append(("revoked", {P1}))

    rig.consumer.on_poll = hook
    started = time.monotonic()
    outcome = rig.processor.run()
    assert outcome.exit_code == ExitCode.OK
    assert time.monotonic() - started < 3  # not the 10 s revoke timeout
    assert rig.consumer.commits == []
    assert rig.engine.pending() == 0


def test_a_stop_requested_during_a_revoke_cuts_it_to_the_drain_deadline():
    # Fault 5: SIGTERM while a revoke waits for the model took revoke_timeout_s + drain.
    rig = make({0: [doc(i) for i in range(3)]}, engine=FakeEngine(auto=False),
               drain_timeout_s=0.3, revoke_timeout_s=20)
    rig.start()
    stop_after = time.monotonic() + 0.2

    def poll_results(timeout=0.0, real=rig.engine.poll_results):
        if time.monotonic() > stop_after:
            rig.processor.request_stop("SIGTERM")  # arrives in the middle of the revoke
        return real(timeout)

    rig.engine.poll_results = poll_results
    rig.consumer.events.append(("revoked", {P0}))
    started = time.monotonic()
    rig.processor.run_once()
    assert time.monotonic() - started < 1.5


def test_an_unacknowledged_output_holds_back_the_commit_of_its_partition():
    rig = make({0: [doc(i) for i in range(3)], 1: [doc(10 + i) for i in range(3)]},
               producer={"auto": False})
    rig.start()
    rig.producer.ack_all(skip=lambda topic, key: key == b"d0")  # P0 offset 0 unacknowledged
    for _ in range(5):
        rig.processor.run_once()
        time.sleep(0.02)
    assert rig.consumer.committed_now() == {P1: 3}  # P0 held at its unacknowledged offset 0
    rig.producer.ack_all()
    outcome = rig.run(lambda c: rig.processor.registry.count() == 0)
    assert outcome.exit_code == ExitCode.OK
    assert rig.consumer.committed_now() == {P0: 3, P1: 3}


def test_readiness_follows_the_assignment_and_the_membership():
    # Fault 4: /readyz said ready before the partitions came and after they were lost.
    rig = make({0: [doc(i) for i in range(3)]})
    rig.health.model_loaded = True
    assert not rig.health.ready()[0]
    rig.consumer.events.clear()
    rig.start()
    assert rig.health.ready() == (False, "not a member of the consumer group (joining, or "
                                         "membership lost)")
    rig.consumer.events.append(("assigned", {P0}))
    rig.processor.run_once()
    assert rig.health.ready() == (True, "ok")
    rig.consumer.events.append(("lost", {P0}))
    rig.processor.run_once()
    assert not rig.health.ready()[0]
    rig.consumer.events.append(("assigned", {P0}))
    rig.processor.run_once()
    assert rig.health.ready()[0]
    rig.processor.request_stop("SIGTERM")
    rig.processor.run()
    assert rig.health.ready() == (False, "stopping")


def test_partitions_never_fetched_from_count_as_work_for_the_watchdog():
    # A consumer that joined and then never fetched (seen with kafka-python 3.0.x) has no
    # lag to show; the watchdog must still see that there may be work.
    rig = make({0: [], 1: []})
    rig.start()
    rig.processor.update_lag()
    assert not rig.processor.has_work()  # fetched: nothing there
    rig.consumer.highwater = lambda tp: None if tp == P1 else 0
    rig.processor.update_lag()
    assert rig.processor.has_work()


def test_consumer_lag_counts_from_the_last_commit_else_the_first_offset_read():
    rig = make({0: [doc(i) for i in range(10)], 1: [doc(100 + i) for i in range(5)]},
               engine=FakeEngine(auto=False), max_poll_records=4)
    rig.broker.committed[("g", P0)] = 3  # a previous owner's commit
    rig.start()  # P0 3..6 read (the position is 7), nothing of P1 yet
    rig.processor.update_lag()
    lag = {p: rig.metric("eurovoc_consumer_lag", topic=TOPIC, partition=str(p)) for p in (0, 1)}
    assert lag == {0: 7, 1: 5}  # P0: from the first offset read; P1: from its position
    rig.engine.release(2)  # offsets 3 and 4 done
    for _ in range(5):
        rig.processor.run_once()
        time.sleep(0.02)
    assert rig.processor.registry.committed(P0) == 5
    rig.processor.update_lag(lookup_positions=False)
    assert rig.metric("eurovoc_consumer_lag", topic=TOPIC, partition="0") == 5


def one_bad_in_three(count: int) -> list[bytes]:
    """Offsets 2, 5, 8, ... are not JSON: one bad record in three, never two in a row."""
    return [b"not json" if offset % 3 == 2 else doc(offset) for offset in range(count)]


def test_a_backlog_of_one_bad_record_in_three_read_in_polls_of_500_never_trips():
    # issue 17: decoding dead-letters at once what the engine labels later, so counting outcomes
    # as they came made 99 dead letters "consecutive" and stopped the worker with exit 3.
    rig = make({0: one_bad_in_three(600)}, max_poll_records=500)
    outcome = rig.run(lambda c: rig.consumer.committed_now().get(P0) == 600 or c.polls > 500)
    assert outcome.exit_code == ExitCode.OK, outcome.message
    assert rig.consumer.committed_now() == {P0: 600}
    assert rig.metric("eurovoc_documents_dead_lettered_total", reason="not_json") == 200
    assert len(rig.outputs()) == 400


def runs_of_bad(runs: list[int]) -> tuple[list[bytes], set[str]]:
    """Runs of that many bad records, each run followed by one good document: the bad ones
    alternate between not JSON (dead-lettered at decoding, at once) and documents the engine
    fails (dead-lettered when their result comes). Returns the values and the failing ids."""
    values, failing = [], set()
    for run in runs:
        for index in range(run):
            offset = len(values)
            if index % 2:
                values.append(b"not json")
            else:
                values.append(doc(offset))
                failing.add(f"d{offset}")
        values.append(doc(len(values)))
    return values, failing


def committed(rig: Rig) -> dict[int, int]:
    """The group's committed offsets on the broker (both delivery modes)."""
    return rig.broker.committed_offsets("g", TOPIC)


def run_released_slowly(rig: Rig, end: int, per_poll: int = 7):
    """Run until everything is committed; the engine finishes ``per_poll`` documents a poll."""
    def until(consumer):
        rig.engine.release(per_poll)
        return committed(rig).get(0) == end or consumer.polls > 2000
    return rig.run(until)


def dead_letter_offsets(rig: Rig) -> list[int]:
    """Source offsets of the dead letters on the broker (exactly-once: committed ones)."""
    return sorted(DeadLetterHeaders.from_kafka_headers(record.headers).source_offset
                  for record in rig.broker.records("dlq"))


def test_99_dead_letters_in_a_row_never_trip_the_consecutive_limit():
    values, failing = runs_of_bad([99, 99, 99])
    rig = make({0: values}, engine=FakeEngine(auto=False, reverse=True, fail_ids=failing),
               max_poll_records=500, dlq_max_ratio=1.0)
    outcome = run_released_slowly(rig, len(values))
    assert outcome.exit_code == ExitCode.OK, outcome.message
    assert committed(rig) == {0: 300}
    assert len(dead_letter_offsets(rig)) == 297


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_the_100th_dead_letter_in_a_row_is_refused_and_nothing_after_it_committed(delivery):
    values, failing = runs_of_bad([99, 99, 150])
    rig = make({0: values}, engine=FakeEngine(auto=False, reverse=True, fail_ids=failing),
               max_poll_records=500, dlq_max_ratio=1.0, delivery=delivery)
    outcome = run_released_slowly(rig, len(values))
    assert outcome.exit_code == ExitCode.DLQ_LIMIT
    assert "100 consecutive" in outcome.message and "docs/0" in outcome.message
    refused = 200 + 99  # the third run starts at offset 200
    assert committed(rig) == {0: refused}
    letters = dead_letter_offsets(rig)
    assert len(letters) == 99 * 3 and max(letters) == refused - 1  # none after the refused one


def test_the_ratio_trips_at_half_of_the_last_1000_records_read_in_polls_of_500():
    values = [doc(offset) for offset in range(500)] + [b"not json"] * 600
    rig = make({0: values}, engine=FakeEngine(auto=False, reverse=True),
               max_poll_records=500, dlq_max_consecutive=0)
    outcome = run_released_slowly(rig, len(values), per_poll=50)
    assert outcome.exit_code == ExitCode.DLQ_LIMIT
    assert "500 of the last 1000" in outcome.message
    assert committed(rig) == {0: 999}
    assert len(dead_letter_offsets(rig)) == 499


def test_partitions_are_judged_apart():
    # 60 + 60 bad records in two partitions: 120 of the worker, but never 100 in a partition
    rig = make({0: [b"junk"] * 60 + [doc(0)], 1: [b"junk"] * 60 + [doc(1)]},
               max_poll_records=500, dlq_max_ratio=1.0)
    outcome = rig.run(lambda c: c.polls > 20)
    assert outcome.exit_code == ExitCode.OK, outcome.message
    assert committed(rig) == {0: 61, 1: 61}


def big_doc(i: int, size: int = 1000) -> bytes:
    return orjson.dumps({"id": f"d{i}", "text": "fish " * (size // 5)})


@pytest.mark.parametrize("budget", [4000, None])
def test_the_byte_budget_pauses_fetching_until_acknowledgements_free_it(budget):
    values = [big_doc(i) for i in range(20)]
    size = len(values[0]) + len(b"k0")  # 1023 bytes a record
    overrides = {} if budget is None else {"max_in_flight_bytes": budget}
    rig = make({0: values}, engine=FakeEngine(auto=False), max_poll_records=2, **overrides)
    rig.start(10)  # the engine holds every document: nothing is acknowledged
    registry = rig.processor.registry
    if budget is None:  # 64 MiB: the whole topic is read
        assert registry.count() == 20 and rig.consumer.paused() == set()
        return
    # paused at the first poll that reached the budget, the records of that poll included
    assert registry.count() == 4 and registry.bytes() == 4 * size  # two polls of two
    assert rig.consumer.paused() == {P0}
    rig.engine.release(4)  # labelled, sent, acknowledged: the budget is free again
    rig.processor.run_once()
    assert rig.consumer.paused() == set() and registry.bytes() == 0
    rig.start(5)
    assert rig.consumer.paused() == {P0} and registry.count() == 4  # the next four
    assert len(rig.producer.sent) == 4
    outcome = run_released_slowly(rig, 20, per_poll=20)
    assert outcome.exit_code == ExitCode.OK and rig.consumer.committed_now() == {P0: 20}


def test_a_poll_asks_for_no_more_records_than_the_byte_budget_has_room_for():
    values = [big_doc(i) for i in range(50)]
    size = len(values[0]) + len(b"k0")  # 1023 bytes a record
    rig = make({0: values}, engine=FakeEngine(auto=False), max_poll_records=500,
               max_in_flight_bytes=10_000)
    asked = []
    real_poll = rig.consumer.poll

    def poll(timeout_ms=0, max_records=500):
        asked.append(max_records)
        return real_poll(timeout_ms, max_records)

    rig.consumer.poll = poll
    rig.start(10)  # nothing acknowledged
    # first poll: room for no record of max_message_bytes (1 MiB): one; then (10,000 - 1023) //
    # 1023 = 8; then room for none: one, which reaches the budget
    assert asked[:3] == [1, 8, 1]
    registry = rig.processor.registry
    assert registry.count() == 10 and 10_000 <= registry.bytes() < 10_000 + size
    assert rig.consumer.paused() == {P0}
