"""Run ``eurovoc-worker run`` as a subprocess against the real broker, and watch what it does."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.kafka_fixtures import CONSUMER_TIMEOUTS, free_ports

REPO = Path(__file__).resolve().parents[2]

# Short timeouts so that a dead member is noticed fast on a busy 2-core machine.
FAST_GROUP = [
    "--session-timeout-ms", "6000",
    "--heartbeat-interval-ms", "1000",
    "--commit-interval-ms", "200",
    "--lag-interval-s", "0.5",
    "--torch-threads", "1",
    "--no-warmup",
    "--max-wait-ms", "5",
]


def document(doc_id: str, words: int = 20) -> bytes:
    text = " ".join(["the council regulation on fish and milk trade"] * max(1, words // 8))
    return orjson.dumps({"id": doc_id, "text": text, "metadata": {"n": doc_id}})


def documents(count: int, prefix: str = "doc") -> list[tuple[bytes, bytes]]:
    return [(f"{prefix}-{i}".encode(), document(f"{prefix}-{i}", 8 + (i * 7) % 120))
            for i in range(count)]


_STARTUPS: list[float] = []  # seconds from spawn to model_loaded, of every worker this session
STARTUP_FLOOR_S = 90.0  # a tiny model's start took up to ~58 s with five suites on two cores


def startup_budget_s() -> float:
    """How long a worker may take to load its model: three times the slowest start measured in
    this session, and never less than :data:`STARTUP_FLOOR_S`."""
    return max(STARTUP_FLOOR_S, 3 * max(_STARTUPS, default=0.0))


class WorkerProcess:
    """One worker subprocess; stderr (JSON logs) is collected on a thread."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        model: Path,
        extra: Iterable[str] = (),
        module: str = "worker.commands.cli",
        env: dict[str, str] | None = None,
        name: str = "worker",
    ) -> None:
        [self.port] = free_ports(1)
        self.topic = topic
        self.args = [
            sys.executable, "-m", module, "run",
            "--bootstrap-servers", bootstrap,
            "--input-topic", topic,
            "--output-topic", f"{topic}-out",
            "--dlq-topic", f"{topic}-dlq",
            "--group-id", group,
            "--model", str(model),
            "--metrics-host", "127.0.0.1",
            "--metrics-port", str(self.port),
            "--worker-id", name,
            *FAST_GROUP,
            *extra,
        ]
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                    **(env or {})}
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.started_at = 0.0
        self.loaded_at: float | None = None  # when the model_loaded event was read

    def start(self) -> WorkerProcess:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.args, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            if self.loaded_at is None and '"event":"model_loaded"' in line.replace(" ", ""):
                self.loaded_at = time.monotonic()
                _STARTUPS.append(self.loaded_at - self.started_at)
            self.lines.append(line.rstrip("\n"))

    def events(self, name: str | None = None) -> list[dict]:
        return [entry for entry in log_events(list(self.lines))
                if name is None or entry.get("event") == name]

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def wait_event(self, name: str, timeout_s: float) -> dict:
        """The first ``name`` event, waited for up to ``timeout_s`` once the model is loaded: a
        worker still loading its model (tens of seconds on a busy machine) gets the start-up
        budget (:func:`startup_budget_s`, scaled to the slowest start measured) first."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.events(name)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            if self.loaded_at is None:
                limit = max(deadline, self.started_at + startup_budget_s())
            else:
                limit = max(deadline, self.loaded_at + timeout_s)
            if time.monotonic() >= limit:
                break
            time.sleep(0.1)
        state = "model not loaded" if self.loaded_at is None else "after the model loaded"
        raise AssertionError(f"no {name!r} event within {timeout_s}s ({state}); log:\n"
                             f"{self.log_text()[-5000:]}")

    def get(self, path: str) -> tuple[int, str]:
        """``(status, body)``; ``(0, "")`` while nothing listens yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except urllib.error.URLError:
            return 0, ""

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit within {timeout_s}s; log:\n"
                                 f"{self.log_text()[-5000:]}") from None
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self, timeout_s: float = 40) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class TopicReader:
    """Reads a topic from the beginning, incrementally (no group); ``read_committed``: as a
    downstream reader of an exactly-once worker does."""

    def __init__(self, bootstrap: str, topic: str, *, read_committed: bool = False) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, **CONSUMER_TIMEOUTS,
            isolation_level="read_committed" if read_committed else "read_uncommitted")
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.records: list = []

    def poll(self, timeout_ms: int = 200) -> int:
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            self.records.extend(batch)
        return len(self.records)

    def wait_for(self, count: int, timeout_s: float,
                 also: Callable[[], None] | None = None) -> list:
        deadline = time.monotonic() + timeout_s
        while self.poll() < count:
            if also is not None:
                also()
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.records)} of {count} records after {timeout_s}s")
        return self.records

    def ids(self) -> collections.Counter:
        return collections.Counter(orjson.loads(record.value)["id"] for record in self.records)

    def close(self) -> None:
        self.consumer.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{label-string: value}`` of one metric family in Prometheus text format."""
    values = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            values[key[len(name):]] = float(value)
    return values


def feed(bootstrap: str, topic: str, partitions: int, rate: float, stop: threading.Event) -> int:
    """Send one small document to each partition in turn at ``rate`` a second until ``stop``;
    returns how many were sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        doc_id = f"doc-{sent}"
        producer.send(topic, key=doc_id.encode(), partition=sent % partitions,
                      value=orjson.dumps({"id": doc_id, "text": "council regulation fish"}))
        sent += 1
        time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    producer.flush(30)
    producer.close(5)
    return sent


def log_events(lines: Iterable[str]) -> list[dict]:
    """The JSON log lines among ``lines``, parsed."""
    out = []
    for line in lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def owned_at(events: list[dict], moment: float) -> set[int]:
    """Partitions a worker held at ``moment`` (epoch seconds), from its partition events."""
    owned: set[int] = set()
    for event in events:
        kind = event.get("event")
        if kind not in ("partitions_assigned", "partitions_revoked", "partitions_lost"):
            continue
        if datetime.fromisoformat(event["ts"]).timestamp() > moment:
            break
        partitions = {int(name.rsplit("/", 1)[1]) for name in event["partitions"]}
        owned = owned | partitions if kind == "partitions_assigned" else owned - partitions
    return owned


def longest_gap(times: Iterable[float], start: float, end: float) -> float:
    """The longest interval within [start, end] without one of ``times``."""
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in zip(points, points[1:]))
