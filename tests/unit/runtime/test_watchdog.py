"""The watchdog (worker.runtime.watchdog): stalls, hard deadlines, broker outages; a fake clock."""

import logging
import threading

import pytest
from kafka import TopicPartition

from schemas.labels import SourceRef
from worker.exit_codes import ExitCode
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.progress import Event, Progress
from worker.pipeline.work_items import Stage, WorkItem
from worker.runtime import watchdog as watchdog_module
from worker.runtime.http_endpoints import HealthState
from worker.runtime.logging_setup import kafka_log_throttle
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.watchdog import EXIT_GRACE_S, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Processor:
    def __init__(self) -> None:
        self.work = False
        self.lag = 0
        self.stops: list[tuple[str, ExitCode]] = []
        self.drain_deadline: float | None = None

    def has_work(self) -> bool:
        return self.work

    def request_stop(self, reason: str, exit_code: ExitCode = ExitCode.OK) -> None:
        self.stops.append((reason, exit_code))


class Consumer:
    def __init__(self) -> None:
        self.up = True
        self.io_alive = True

    def connected(self) -> bool:
        return self.up

    def io_thread_alive(self) -> bool:
        return self.io_alive


class Producer:
    def __init__(self) -> None:
        self.up = True

    def connected(self) -> bool:
        return self.up


class Rig:
    def __init__(self) -> None:
        self.clock = Clock()
        self.metrics = WorkerMetrics()
        self.registry = InFlightRegistry(self.metrics)
        self.progress = Progress(self.metrics, clock=self.clock)
        self.health = HealthState(stall_after_s=120, clock=self.clock)
        self.processor = Processor()
        self.consumer = Consumer()
        self.producer = Producer()
        self.exits: list[int] = []
        self.watchdog = Watchdog(
            self.processor, self.consumer, self.registry, stall_timeout_s=120,
            progress=self.progress, health=self.health, metrics=self.metrics,
            producer=self.producer, exit=self.exits.append, clock=self.clock,
        )

    def tick(self, seconds: float) -> None:
        """The loop iterates (it is alive) while ``seconds`` pass."""
        self.clock.now += seconds
        self.health.tick()
        self.watchdog.check(self.clock.now)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_idle_without_work_is_healthy(rig):
    rig.tick(500)
    assert rig.health.live() == (True, "ok") and rig.processor.stops == []


def test_work_without_progress_is_a_stall_diagnosed_then_a_hard_exit(rig, caplog):
    item = WorkItem(SourceRef(topic="docs", partition=2, offset=41), rig.clock.now)
    rig.registry.add(TopicPartition("docs", 2), item)
    item.stage, item.stage_since = Stage.MODEL, rig.clock.now + 5
    rig.processor.work = True
    rig.progress.mark(Event.FETCH)
    rig.tick(119)
    assert rig.processor.stops == []
    rig.progress.mark(Event.BATCH)  # progress restarts the clock
    rig.tick(119)
    assert rig.processor.stops == []
    with caplog.at_level(logging.ERROR, logger="worker.runtime.watchdog"):
        rig.tick(2)
    [(reason, code)] = rig.processor.stops
    assert code == ExitCode.FATAL and "no progress for 121.0s" in reason
    ok, body = rig.health.live()
    assert not ok and "stalled" in body
    diagnosis = caplog.text
    assert "oldest in flight: docs/2@41 in stage model for 235.0s" in diagnosis
    assert "kafka-python IO thread alive" in diagnosis
    assert "batch scored 2.0s" not in diagnosis and "batch scored 121.0s ago" in diagnosis
    rig.tick(EXIT_GRACE_S - 1)
    assert rig.exits == []
    rig.tick(1.5)  # the stopping worker did not exit within the grace period
    assert rig.exits == [int(ExitCode.FATAL)]


def test_a_loop_that_stopped_iterating_is_a_stall_even_without_work(rig):
    rig.health.tick()
    rig.clock.now += 121
    rig.consumer.io_alive = False
    rig.watchdog.check(rig.clock.now)
    [(reason, _)] = rig.processor.stops
    assert "has not completed an iteration for 121.0s" in reason


def test_an_armed_deadline_exits_whatever_is_going_on(rig):
    rig.watchdog.arm(rig.clock.now + 35, 1, "shutdown did not finish")
    rig.watchdog.arm(rig.clock.now + 50, 1, "later deadlines do not win")
    rig.tick(34)
    assert rig.exits == []
    rig.tick(1)
    assert rig.exits == [1]


def test_a_stop_without_a_signal_gets_a_deadline_too(rig):
    """A delivery failure stops the loop with no signal and no stall: the drain, the last
    commit and consumer.close() (which can block) still end by the drain deadline + grace."""
    rig.processor.drain_deadline = rig.clock.now + 30
    rig.health.stopping = True
    rig.tick(30 + EXIT_GRACE_S - 0.5)
    assert rig.exits == []
    rig.tick(1)
    assert rig.exits == [int(ExitCode.FATAL)]


def test_an_error_in_the_loop_stops_within_the_grace_period(rig):
    rig.health.stopping = True  # the loop raised: no stop requested, so no drain deadline
    rig.tick(0.5)  # the watchdog's next round sees it
    rig.tick(EXIT_GRACE_S - 0.5)
    assert rig.exits == []
    rig.tick(1)
    assert rig.exits == [int(ExitCode.FATAL)]


def test_the_watchdog_thread_outlives_any_exception_in_a_check(rig, caplog, monkeypatch):
    """Every kind of failure in a round (a bug, a SystemExit) is logged once, and the thread
    goes on checking: here it still turns an outage into the gauge afterwards."""
    gauge = rig.metrics.registry.get_sample_value
    failures = iter([RuntimeError("registry changed"), RuntimeError("registry changed"),
                     SystemExit(3), KeyError("x")])
    rounds = threading.Semaphore(0)

    class Flaky(Consumer):
        def connected(self) -> bool:
            rounds.release()
            failure = next(failures, None)
            if failure is not None:
                raise failure
            return self.up

    rig.consumer = Flaky()
    rig.producer.up = rig.consumer.up = False
    monkeypatch.setattr(watchdog_module, "TICK_S", 0.01)  # rounds as fast as they are counted
    watchdog = Watchdog(
        rig.processor, rig.consumer, rig.registry, stall_timeout_s=120, progress=rig.progress,
        health=rig.health, metrics=rig.metrics, producer=rig.producer, exit=rig.exits.append,
        clock=rig.clock)
    with caplog.at_level(logging.WARNING, logger="worker.runtime.periodic"):
        watchdog.start()
        try:
            for _ in range(8):
                assert rounds.acquire(timeout=5)
        finally:
            watchdog.stop()
    failed = [r.getMessage() for r in caplog.records if r.event == "check_failed"]
    assert failed == [
        "eurovoc-watchdog: a round failed (RuntimeError: registry changed); the thread goes on",
        "eurovoc-watchdog: a round failed (SystemExit: 3); the thread goes on",
        "eurovoc-watchdog: a round failed (KeyError: 'x'); the thread goes on",
    ]
    events = [r.event for r in caplog.records if r.name == "worker.runtime.periodic"]
    assert events == ["check_failed"] * 3 + ["check_recovered"]
    assert gauge("eurovoc_broker_connected") == 0  # the rounds after the failures still ran


def test_a_broker_outage_is_logged_once_when_it_starts_and_once_when_it_ends(rig, caplog):
    gauge = rig.metrics.registry.get_sample_value
    rig.tick(0.5)
    assert gauge("eurovoc_broker_connected") == 1
    rig.consumer.up = rig.producer.up = False
    with caplog.at_level(logging.WARNING, logger="worker.runtime.watchdog"):
        for _ in range(40):  # 20 s of outage
            rig.tick(0.5)
        assert gauge("eurovoc_broker_connected") == 0
        assert kafka_log_throttle.quiet  # kafka-python's repeated errors are not shown meanwhile
        rig.producer.up = True  # the producer, with outputs to send, reconnects first
        rig.tick(0.5)
    events = [record.event for record in caplog.records]
    assert events == ["broker_unreachable", "broker_reachable"]
    assert caplog.records[-1].outage_seconds == pytest.approx(20.0)
    assert not kafka_log_throttle.quiet and gauge("eurovoc_broker_connected") == 1


def test_no_outage_while_the_producer_is_connected_although_the_consumer_is_not(rig, caplog):
    gauge = rig.metrics.registry.get_sample_value
    rig.consumer.up = False
    with caplog.at_level(logging.WARNING, logger="worker.runtime.watchdog"):
        for _ in range(10):
            rig.tick(0.5)
    assert gauge("eurovoc_broker_connected") == 1
    assert [record.event for record in caplog.records] == []


def test_the_last_progress_gauge_starts_at_the_start_and_follows_progress():
    metrics = WorkerMetrics()
    wall = Clock()
    progress = Progress(metrics, clock=Clock(), wall_clock=wall)
    gauge = metrics.registry.get_sample_value
    assert gauge("eurovoc_last_progress_timestamp_seconds") == 1000.0  # not 0 (1970) at start
    wall.now = 1042.0
    progress.mark(Event.FETCH)
    assert gauge("eurovoc_last_progress_timestamp_seconds") == 1042.0
