"""Pytest plugin: a real local Kafka broker, fresh topics and groups, and client helpers.

Load it with ``pytest_plugins = ["tests.kafka_fixtures"]``.

``kafka_bootstrap`` uses ``$KAFKA_BOOTSTRAP`` when it is set (a broker someone already
runs). Otherwise it starts a private broker with ``deploy/local/kafka.sh`` on free ports
and a data dir under the pytest temp dir, so it never collides with a developer's demo
broker, and stops it at the end of the session.

The helper functions are plain functions so that any test can import them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

log = logging.getLogger(__name__)

KAFKA_SH = Path(__file__).resolve().parents[1] / "deploy" / "local" / "kafka.sh"

# Client settings for a busy 2-core machine: fail fast on a dead broker, notice a
# dead group member quickly, but give slow requests room.
CLIENT_TIMEOUTS = {"bootstrap_timeout_ms": 10_000, "request_timeout_ms": 20_000}
CONSUMER_TIMEOUTS = {**CLIENT_TIMEOUTS, "session_timeout_ms": 6_000, "heartbeat_interval_ms": 1_000}


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on right now (all distinct)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class LocalBroker:
    """One broker managed by deploy/local/kafka.sh, with its own ports and data dir."""

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    bootstrap: str = field(init=False)
    addresses: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        spare = iter(free_ports(2))
        self.port = self.port or next(spare)
        self.controller_port = self.controller_port or next(spare)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def kafka_sh(self, command: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_DATA_DIR": str(self.data_dir),
            **self.extra_env,
        }
        return subprocess.run([str(KAFKA_SH), command], env=env, capture_output=True, text=True, timeout=timeout_s)

    def start(self) -> str:
        """Starts the broker (resolving Kafka through Maven on first use); returns its bootstrap.

        Everything kafka.sh printed (``KEY=value`` lines) is kept in ``addresses``.
        """
        result = self.kafka_sh("start")
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed (exit {result.returncode}):\n{result.stderr}")
        self.addresses = dict(line.split("=", 1) for line in result.stdout.split())
        return self.addresses["KAFKA_BOOTSTRAP"]

    def stop(self) -> None:
        result = self.kafka_sh("stop")
        if result.returncode != 0:
            log.warning("kafka.sh stop failed (exit %s): %s", result.returncode, result.stderr)

    def pid(self) -> int:
        return int((self.data_dir / "kafka.pid").read_text())


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker: $KAFKA_BOOTSTRAP, or a private one for this session."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """``create(partitions=3, configs=None) -> name``: fresh topics, deleted after the test."""
    created: list[str] = []

    def create(partitions: int = 3, configs: dict[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex}"
        create_topic(kafka_bootstrap, name, partitions, configs)
        created.append(name)
        return name

    yield create
    if created:
        try:
            with admin_client(kafka_bootstrap) as admin:
                admin.delete_topics(created)
        except Exception as exc:  # cleanup only: a leftover uuid-named topic harms nobody
            log.warning("could not delete topics %s: %s", created, exc)


@pytest.fixture
def new_topic(topic_factory: Callable[..., str]) -> str:
    """A fresh 3-partition topic whose partitions all have a leader."""
    return topic_factory()


@pytest.fixture
def group_id() -> str:
    """A fresh consumer group name."""
    return f"test-group-{uuid.uuid4().hex}"


@contextlib.contextmanager
def admin_client(bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **CLIENT_TIMEOUTS)
    try:
        yield admin
    finally:
        admin.close()


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 3,
    configs: dict[str, str] | None = None,
    timeout_s: float = 30,
) -> None:
    """Creates a topic and waits until every partition has a leader."""
    with admin_client(bootstrap) as admin:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
        deadline = time.monotonic() + timeout_s
        while not _all_partitions_led(admin, name, partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name}: not all {partitions} partitions have a leader after {timeout_s}s")
            time.sleep(0.1)


def _all_partitions_led(admin: KafkaAdminClient, topic: str, partitions: int) -> bool:
    [description] = admin.describe_topics([topic])
    led = [
        p for p in description.get("partitions") or [] if p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0
    ]
    return description.get("error_code", 0) == 0 and len(led) == partitions


def produce_messages(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    *,
    flush_timeout_s: float = 60,
    **producer_config,
) -> None:
    """Sends ``(key, value)`` pairs, flushes, and raises if any send failed.

    ``producer_config`` overrides the KafkaProducer settings (e.g. compression for bulk loads).
    """
    config = {"linger_ms": 5, **CLIENT_TIMEOUTS, **producer_config}
    producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush(timeout=flush_timeout_s)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap: str, topic: str, expected_count: int, timeout_s: float = 30) -> list[ConsumerRecord]:
    """Reads the topic from the beginning (no group) until ``expected_count`` records came back."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **CONSUMER_TIMEOUTS)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected_count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"got {len(records)} of {expected_count} records from {topic} in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """``{partition: log end offset}`` of every partition of the topic."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER_TIMEOUTS)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str, timeout_s: float = 30) -> dict[int, int]:
    """``{partition: committed offset}`` of the group on the topic (partitions without a commit left out)."""
    deadline = time.monotonic() + timeout_s
    with admin_client(bootstrap) as admin:
        while True:
            try:
                offsets = admin.list_group_offsets({group: None}).get(group, {})
                break
            except KafkaError as exc:  # e.g. no coordinator until __consumer_offsets exists
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def all_committed(bootstrap: str, group: str, topic: str) -> bool:
    """Whether the group's committed offsets reached the end of every partition of the topic."""
    return committed_offsets(bootstrap, group, topic) == end_offsets(bootstrap, topic)
