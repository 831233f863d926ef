"""Process-level behaviour of the worker (worker.app, worker.logging_setup) without a broker."""

import io
import logging
import signal

import orjson
import pytest

from worker.app import _Signals
from worker.logging_setup import setup_logging


class _Loop:
    def __init__(self) -> None:
        self.stops: list[str] = []

    def request_stop(self, reason: str) -> None:
        self.stops.append(reason)


def test_first_signal_drains_and_a_second_exits_at_once(monkeypatch):
    exits = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr("worker.app.os._exit", fake_exit)
    loop = _Loop()
    before = signal.getsignal(signal.SIGTERM)
    with _Signals(loop) as signals:
        assert signal.getsignal(signal.SIGTERM) == signals._handle
        signals._handle(signal.SIGTERM, None)
        assert loop.stops == ["received SIGTERM"] and exits == []
        with pytest.raises(SystemExit):
            signals._handle(signal.SIGINT, None)
    assert exits == [128 + signal.SIGINT]
    assert loop.stops == ["received SIGTERM"]  # the second signal did not wait for the drain
    assert signal.getsignal(signal.SIGTERM) == before


def test_json_logs_are_one_object_per_line_with_the_extra_fields():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        setup_logging("INFO", "json", stream=stream)
        logging.getLogger("worker.test").info(
            "partitions %s", "assigned", extra={"event": "partitions_assigned", "generation": 4})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("worker.test").exception("failed", extra={"event": "fatal"})
        logging.getLogger("kafka.conn").info("chatty")  # kafka-python stays at WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "partitions assigned" and first["level"] == "INFO"
    assert (first["event"], first["generation"], first["logger"]) == (
        "partitions_assigned", 4, "worker.test")
    assert first["ts"].endswith("+00:00")
    assert second["event"] == "fatal" and "ValueError: boom" in second["exc"]
