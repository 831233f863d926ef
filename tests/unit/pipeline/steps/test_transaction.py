"""Exactly-once on the in-memory Kafka: what each transaction holds, aborts, revokes, fencing,
and a transaction that never completes (no broker, no model)."""

from __future__ import annotations

import threading
import time

import pytest
from kafka.errors import MessageSizeTooLargeError, TopicAuthorizationFailedError
from kafka.structs import MemberState

from tests.fake_engine import FakeEngine
from tests.fake_kafka import FakeTransactionalProducer
from tests.unit.pipeline.steps.test_produce import refusing
from tests.unit.pipeline.test_processor import P0, P1, TOPIC, doc, make
from worker import app
from worker.kafka.clients import consumer_config, producer_config
from worker.pipeline.processor import ExitCode
from worker.pipeline.progress import Event
from worker.pipeline.steps import transaction as transaction_step
from worker.runtime.watchdog import Watchdog
from worker.settings.worker_settings import load_settings

EOS = {"delivery": "exactly-once"}


def committed(rig) -> dict[int, int]:
    return rig.broker.committed_offsets("g", TOPIC)


def spin(rig, seconds: float = 0.05) -> None:
    """Loop iterations for a few commit intervals (10 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rig.processor.run_once()


def test_a_transaction_holds_only_outputs_below_the_watermark():
    rig = make({0: [doc(i) for i in range(10)]}, engine=FakeEngine(auto=False), **EOS)
    rig.start()
    rig.engine.finish([f"d{i}" for i in range(9, 1, -1)])  # all but offsets 0 and 1
    spin(rig)
    assert rig.producer.transactions == [] and committed(rig) == {}  # nothing contiguous yet
    rig.engine.finish(["d0"])
    spin(rig)
    assert rig.producer.transactions == [[("out", b"d0")]] and committed(rig) == {0: 1}
    rig.engine.release(1)
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.OK
    assert committed(rig) == {0: 10}
    keys = [key for transaction in rig.producer.transactions for _, key in transaction]
    assert keys == [f"d{i}".encode() for i in range(10)]  # each once, in offset order
    assert rig.metric("eurovoc_transactions_total", outcome="committed") == len(
        rig.producer.transactions)
    assert rig.metric("eurovoc_end_to_end_seconds_count") == 10


def test_transactions_wait_out_a_short_rebalance_but_go_on_during_a_long_one(monkeypatch):
    monkeypatch.setattr(transaction_step, "_REBALANCE_WAIT_S", 0.2)
    rig = make({0: [doc(i) for i in range(3)]}, **EOS)
    rig.consumer.state = MemberState.REBALANCING
    rig.start()
    spin(rig, 0.1)
    assert committed(rig) == {}  # a rebalance that may end in a moment: wait
    spin(rig, 0.3)
    assert committed(rig) == {0: 3}  # still rebalancing: a dead member's session runs out


def test_no_transaction_before_the_first_join():
    rig = make({0: [doc(i) for i in range(3)]}, **EOS)
    rig.consumer.state = MemberState.UNJOINED
    rig.start()
    spin(rig, 0.1)
    assert committed(rig) == {}


def test_dead_letters_go_into_the_same_transactions():
    rig = make({0: [doc(0), b"not json", doc(2)]}, **EOS)
    assert rig.run().exit_code == ExitCode.OK
    sent = [(topic, key) for transaction in rig.producer.transactions for topic, key in transaction]
    assert sorted(sent) == [("dlq", b"k1"), ("out", b"d0"), ("out", b"d2")]
    assert committed(rig) == {0: 3}


def test_an_error_inside_a_transaction_aborts_seeks_back_and_reprocesses():
    rig = make({0: [doc(i) for i in range(20)], 1: [doc(100 + i) for i in range(20)]},
               producer={"fail_offsets_calls": {1}}, max_poll_records=8, **EOS)
    outcome = rig.run(until=lambda consumer: consumer.polls > 80)
    assert outcome.exit_code == ExitCode.OK
    assert len(rig.producer.aborted) == 1 and rig.producer.aborted[0]
    assert rig.metric("eurovoc_transactions_total", outcome="aborted") == 1
    keys = [key for transaction in rig.producer.transactions for _, key in transaction]
    expected = sorted(f"d{i}".encode() for i in [*range(20), *range(100, 120)])
    assert sorted(keys) == expected  # everything once, the aborted ones again
    assert committed(rig) == {0: 20, 1: 20}


def test_a_revoke_commits_the_revoked_partitions_up_to_their_watermark():
    rig = make({0: [doc(i) for i in range(6)], 1: [doc(10 + i) for i in range(6)]},
               engine=FakeEngine(auto=False), commit_interval_ms=60_000,
               transaction_timeout_ms=200_000, **EOS)
    rig.start()
    rig.engine.finish(["d0", "d1", "d3", "d10"])  # P0: watermark 2 (d3 waits); P1: 1
    rig.processor.run_once()
    rig.consumer.events.append(("revoked", {P0}))
    rig.processor.run_once()  # the revoke waits for P0's work until revoke_timeout_s, then commits
    assert committed(rig) == {0: 2}
    assert rig.producer.transactions == [[("out", b"d0"), ("out", b"d1")]]
    assert P0 not in rig.processor.registry.partitions()
    assert rig.processor.registry.count([P1]) == 5  # untouched; d10 still held


def test_a_fenced_producer_stops_the_worker_with_exit_1_and_a_clear_message():
    rig = make({0: [doc(i) for i in range(5)]}, group_instance_id="pod-0", **EOS)
    rig.producer.fenced = True
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.FATAL
    assert "'g-pod-0' fenced" in outcome.message and "zombie" in outcome.message
    assert committed(rig) == {} and rig.producer.transactions == []


def test_a_producer_fenced_by_the_broker_is_renewed_when_its_id_is_its_own(monkeypatch):
    # No group_instance_id: the id holds the pid, so only the broker can have fenced it (a
    # transaction that outlived transaction_timeout_ms, e.g. during a broker outage).
    rig = make({0: [doc(i) for i in range(5)]}, **EOS)
    rig.producer.fenced = True
    renewed = FakeTransactionalProducer(rig.broker)
    monkeypatch.setattr(app, "transactional_producer", lambda settings: renewed)
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.OK
    assert committed(rig) == {0: 5}
    keys = [key for transaction in renewed.transactions for _, key in transaction]
    assert sorted(keys) == [f"d{i}".encode() for i in range(5)]


def test_a_transaction_that_never_completes_is_ended_by_the_watchdog():
    # kafka-python's commit_transaction() waits without a timeout.
    rig = make({0: [doc(i) for i in range(3)]}, stall_timeout_s=5, **EOS)
    release = threading.Event()
    rig.producer.on_commit = lambda: release.wait(10)
    exits: list[int] = []
    watchdog = Watchdog(rig.processor, rig.consumer, rig.processor.registry, stall_timeout_s=5,
                        progress=rig.progress, health=rig.health,
                        metrics=rig.metrics, exit=exits.append)
    loop = threading.Thread(target=rig.start, args=(50,), daemon=True)
    loop.start()
    try:
        loop.join(1.0)
        assert loop.is_alive()  # blocked inside commit_transaction
        stuck_since = rig.health.last_tick
        watchdog.check(stuck_since + 6)
        assert rig.health.failure and "has not completed an iteration" in rig.health.failure
        watchdog.check(stuck_since + 12)
        assert exits == [1]
    finally:
        release.set()
        loop.join(5)


@pytest.mark.parametrize("instance, expected", [("pod-3", "g-pod-3"), (None, "g-w7")])
def test_clients_of_exactly_once(instance, expected):
    settings = load_settings(bootstrap_servers="x:1", input_topic="a", output_topic="b",
                             dlq_topic="c", group_id="g", model="/m", worker_id="w7",
                             group_instance_id=instance, delivery="exactly-once")
    assert settings.transactional_id == expected
    config = producer_config(settings)
    assert config["transactional_id"] == expected and config["acks"] == "all"
    assert config["enable_idempotence"] and config["transaction_timeout_ms"] == 10_000
    assert consumer_config(settings)["isolation_level"] == "read_committed"
    at_least_once = load_settings(bootstrap_servers="x:1", input_topic="a", output_topic="b",
                                  dlq_topic="c", group_id="g", model="/m")
    assert "transactional_id" not in producer_config(at_least_once)
    assert consumer_config(at_least_once)["isolation_level"] == "read_uncommitted"


def test_the_transaction_timeout_must_exceed_the_commit_interval():
    with pytest.raises(ValueError, match="transaction_timeout_ms=1000 must be above"):
        load_settings(bootstrap_servers="x:1", input_topic="a", output_topic="b",
                      dlq_topic="c", group_id="g", model="/m", delivery="exactly-once",
                      transaction_timeout_ms=1000, commit_interval_ms=1000)


def test_partitions_are_named_in_the_abort_log(caplog):
    rig = make({0: [doc(i) for i in range(4)]}, producer={"fail_offsets_calls": {1}}, **EOS)
    rig.run()
    aborted = [r for r in caplog.records if getattr(r, "event", None) == "transaction_aborted"]
    assert aborted and f"{TOPIC}/0@0" in aborted[0].getMessage()


@pytest.mark.parametrize("error", [TopicAuthorizationFailedError("dlq"),
                                   MessageSizeTooLargeError("above max.message.bytes")])
def test_a_record_the_broker_refuses_aborts_once_and_stops_the_worker_naming_it(error, caplog):
    rig = make({0: [doc(0), b"not json", doc(2)]}, **EOS)
    refusing(rig, "dlq", error)
    outcome = rig.run(until=lambda consumer: consumer.polls > 200)
    assert outcome.exit_code == ExitCode.FATAL
    assert outcome.message.startswith(
        "DeliveryFailed: delivery to topic dlq failed: refused by the broker for a reason no "
        "retry fixes")
    assert f"{TOPIC}/0@1" in outcome.message and type(error).__name__ in outcome.message
    assert len(rig.producer.aborted) == 1 and rig.producer.transactions == []  # no abort loop
    assert rig.metric("eurovoc_transactions_total", outcome="aborted") == 1
    assert committed(rig) == {}
    refused = [r.getMessage() for r in caplog.records
               if getattr(r, "event", None) == "delivery_refused"]
    assert refused == [outcome.message.removeprefix("DeliveryFailed: ")]


def test_a_record_send_refuses_at_once_aborts_once_and_stops_the_worker():
    # kafka-python's send() raises MessageSizeTooLargeError itself above max_request_size.
    rig = make({0: [doc(0), b"not json"]}, **EOS)
    send = rig.producer.send

    def too_large(topic, value=None, key=None, headers=None):
        if topic == "dlq":
            raise MessageSizeTooLargeError("larger than max_request_size")
        return send(topic, value=value, key=key, headers=headers)

    rig.producer.send = too_large
    outcome = rig.run(until=lambda consumer: consumer.polls > 200)
    assert outcome.exit_code == ExitCode.FATAL and f"{TOPIC}/0@1" in outcome.message
    assert "delivery to topic dlq failed: refused by the broker" in outcome.message
    assert len(rig.producer.aborted) == 1 and committed(rig) == {}


def test_outcomes_are_counted_when_their_transaction_commits():
    rig = make({0: [doc(0), b"not json", doc(2)]}, producer={"fail_offsets_calls": {1}}, **EOS)
    assert rig.run().exit_code == ExitCode.OK
    assert len(rig.producer.aborted) == 1  # the first try, staged and aborted, counts nothing
    assert rig.metric("eurovoc_documents_produced_total") == 2
    assert rig.metric("eurovoc_documents_dead_lettered_total", reason="not_json") == 1
    assert rig.metric("eurovoc_end_to_end_seconds_count") == 2


def test_an_abort_loop_is_no_progress_to_the_metrics_or_the_watchdog():
    rig = make({0: [doc(0), b"not json", doc(2)]},
               producer={"fail_offsets_calls": set(range(1, 10_000))}, **EOS)
    rig.run(until=lambda consumer: consumer.polls > 200)
    assert len(rig.producer.aborted) >= 3 and rig.producer.transactions == []
    assert rig.metric("eurovoc_documents_produced_total") == 0
    assert rig.metric("eurovoc_documents_dead_lettered_total", reason="not_json") is None
    assert Event.ACK not in rig.progress.last and Event.COMMIT not in rig.progress.last
