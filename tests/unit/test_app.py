"""Process-level behaviour of the worker (worker.app, worker.runtime.logging_setup) without a broker."""

import contextlib
import io
import logging
import os
import signal
import threading
import time

import orjson
import pytest
from kafka.errors import KafkaTimeoutError

from tests.unit.settings.test_worker_settings import REQUIRED
from worker import app
from worker.app import _stop_on_signals
from worker.runtime.logging_setup import kafka_log_throttle, setup_logging
from worker.settings.worker_settings import WorkerSettings


class _Processor:
    def __init__(self) -> None:
        self.stops: list[str] = []

    def request_stop(self, reason: str) -> None:
        self.stops.append(reason)


class _Watchdog:
    def __init__(self) -> None:
        self.armed: list[tuple[float, int, str]] = []

    def arm(self, deadline: float, exit_code: int, why: str) -> None:
        self.armed.append((deadline, exit_code, why))


def test_first_signal_drains_with_a_deadline_and_a_second_exits_at_once():
    exits = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    processor, watchdog = _Processor(), _Watchdog()
    before = signal.getsignal(signal.SIGTERM)
    with _stop_on_signals(processor, watchdog, drain_timeout_s=30, exit=fake_exit):
        assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_DFL)
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        assert processor.stops == ["received SIGTERM"] and exits == []
        [(deadline, code, why)] = watchdog.armed  # exit within drain_timeout_s + 5 s, whatever
        assert 34 <= deadline - started <= 35.5 and code == 1 and "did not finish" in why
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGINT)
    assert exits == [128 + signal.SIGINT]
    assert processor.stops == ["received SIGTERM"]  # the second signal did not wait for the drain
    assert signal.getsignal(signal.SIGTERM) == before


@contextlib.contextmanager
def logs(fmt: str):
    """The worker's logging set up on a string stream, the test runner's restored after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        setup_logging("INFO", fmt, stream=stream)
        yield stream
    finally:
        kafka_log_throttle.quiet = False
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_json_logs_are_one_object_per_line_with_the_extra_fields():
    with logs("json") as stream:
        logging.getLogger("worker.test").info(
            "partitions %s", "assigned", extra={"event": "partitions_assigned", "generation": 4})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("worker.test").exception("failed", extra={"event": "fatal"})
        logging.getLogger("kafka.conn").info("chatty")  # kafka-python stays at WARNING
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "partitions assigned" and first["level"] == "INFO"
    assert (first["event"], first["generation"], first["logger"]) == (
        "partitions_assigned", 4, "worker.test")
    assert first["ts"].endswith("+00:00")
    assert second["event"] == "fatal" and "ValueError: boom" in second["exc"]


def test_kafka_python_messages_are_throttled_and_silenced_during_an_outage():
    with logs("text") as stream:
        kafka = logging.getLogger("kafka.net.manager")
        for _ in range(50):
            kafka.error("Connection failed: %s", "refused")
        logging.getLogger("worker.x").error("ours are never throttled")
        logging.getLogger("worker.x").error("ours are never throttled")
        kafka_log_throttle.quiet = True
        logging.getLogger("kafka.cluster").warning("silenced during an outage")
    lines = stream.getvalue().splitlines()
    assert sum("Connection failed" in line for line in lines) == 1
    assert sum("ours are never throttled" in line for line in lines) == 2
    assert not any("silenced" in line for line in lines)


class SlowToRegister:
    """A transactional producer whose ``init_transactions`` times out ``failures`` times."""

    def __init__(self, failures: int, attempt_s: float = 0.0) -> None:
        self.failures, self.attempt_s = failures, attempt_s
        self.attempts = 0
        self.closed = False

    def init_transactions(self) -> None:
        self.attempts += 1
        time.sleep(self.attempt_s)
        if self.attempts <= self.failures:
            raise KafkaTimeoutError("init_transactions")

    def close(self, timeout: float) -> None:
        self.closed = True


def _exactly_once_settings():
    return WorkerSettings(**REQUIRED, delivery="exactly-once", request_timeout_ms=1000)


def test_registering_the_transactional_id_goes_on_after_time_outs(monkeypatch):
    producer = SlowToRegister(failures=2)
    monkeypatch.setattr(app, "build_producer", lambda settings: producer)
    assert app.transactional_producer(_exactly_once_settings()) is producer
    assert producer.attempts == 3 and not producer.closed


def test_registering_gives_up_after_the_request_timeout_and_closes_the_producer(monkeypatch):
    producer = SlowToRegister(failures=1000, attempt_s=0.25)
    monkeypatch.setattr(app, "build_producer", lambda settings: producer)
    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        app.transactional_producer(_exactly_once_settings())
    assert 1.0 <= time.monotonic() - started < 3.0
    assert producer.closed and 4 <= producer.attempts <= 8


class _HangingAdmin:
    """An admin client whose close() never returns (kafka-python's joins its IO thread)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.close_called = threading.Event()

    def close(self) -> None:
        self.close_called.set()
        self.release.wait(10)  # "never" (so the old, unbounded close fails the test)


def test_a_close_that_hangs_on_the_way_out_does_not_keep_the_worker_from_exiting(
        monkeypatch, caplog):
    admin = _HangingAdmin()
    monkeypatch.setattr(app, "connect_admin", lambda connection, client_id: admin)
    monkeypatch.setattr(app, "ensure_topics", lambda admin, settings: None)
    monkeypatch.setattr(app, "topic_max_message_bytes", lambda admin, topic: 10_000_000)

    def refused_engine(settings, metrics):
        raise ValueError("no such checkpoint")

    settings = WorkerSettings(**REQUIRED, metrics_host="127.0.0.1", metrics_port=0)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="worker.runtime.periodic"):
            code = app.run_worker(settings, engine_factory=refused_engine,
                                  configure_logging=False)
        took = time.monotonic() - started
    finally:
        admin.release.set()
    assert code == 2 and admin.close_called.is_set()
    assert app._CLOSE_S <= took < app._CLOSE_S + 1.5  # noqa: SLF001 - the bound it waits
    [timed_out] = [r for r in caplog.records if r.event == "close_timeout"]
    assert timed_out.step == "admin client close"
