"""Structured logs: one JSON object per line on stderr (or plain text for humans). The worker
logs events (start-up, rebalances, commits on revoke, shutdown), never one line per message."""

import logging
import sys
import time
from datetime import UTC, datetime

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (RFC 3339 UTC), ``level``, ``logger``, ``msg``,
    ``thread``, any ``extra={...}`` fields of the call, and ``exc`` for exceptions."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "thread": record.threadName,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class KafkaLogThrottle(logging.Filter):
    """Each distinct ``kafka.*`` message at most once per ``interval_s``; none while ``quiet``.

    kafka-python repeats its warnings and errors while a broker is away (a connection error
    every retry backoff): the worker's :data:`kafka_log_throttle` lets each through at most once
    a minute, and none while the watchdog reports an outage (it logs the outage itself)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.quiet = False
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        if self.quiet:
            return False
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            return False
        self._last[key] = now
        return True


kafka_log_throttle = KafkaLogThrottle()


def setup_logging(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler.addFilter(kafka_log_throttle)
    root.addHandler(handler)
    root.setLevel(level)
    # kafka-python is chatty at INFO (every connection and metadata refresh).
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
