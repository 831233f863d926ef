"""The two Kafkas the step contracts run against: the in-memory fake and the real broker.

A contract test takes the ``backend`` fixture and only uses this interface, so the same test
checks the fake against real Kafka (after getsentry/arroyo's local-broker contract tests): when
the fake drifts from the broker, the real half fails.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import ConsumerRebalanceListener

from tests.fake_kafka import FakeBroker, FakeConsumer, FakeProducer
from tests.kafka_fixtures import (
    admin_client,
    committed_offsets,
    consume_all,
    end_offsets,
    produce_messages,
)
from worker.kafka.clients import build_consumer, producer_config
from worker.kafka.topics import missing_topics
from worker.settings.worker_settings import WorkerSettings, load_settings

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "metrics_port": -1,
              "commit_interval_ms": 100, "poll_timeout_ms": 5}


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self.broker = FakeBroker()
        self.bootstrap = "memory:0"

    def topic(self, partitions: int = 3) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        self.broker.create_topic(name, partitions)
        return name

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        self.broker.produce(topic, messages)

    def producer(self, settings: WorkerSettings, **overrides) -> FakeProducer:
        return FakeProducer(self.broker)

    def consumer(self, settings: WorkerSettings) -> FakeConsumer:
        return FakeConsumer(self.broker, settings.consumer.group_id, settings.kafka.input_topic)

    def joined(self, consumer, topic: str):
        """``consumer`` subscribed to ``topic`` and holding its partitions."""
        consumer.subscribe([topic], listener=_IgnoreRebalances())
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer did not join its group"
            consumer.poll(timeout_ms=0)
            time.sleep(0.02)
        return consumer

    def read(self, topic: str, count: int) -> list[tuple[bytes | None, bytes | None, list]]:
        records = self.broker.records(topic)
        assert len(records) >= count, f"{len(records)} of {count} records in {topic}"
        return [(record.key, record.value, record.headers) for record in records]

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self.broker.committed_offsets(group, topic)

    def exists(self, topic: str) -> bool:
        return topic in self.broker.topics

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {p: len(log) for p, log in enumerate(self.broker.topics[topic])}


class KafkaBackend(MemoryBackend):
    name = "kafka"

    def __init__(self, bootstrap: str, topic_factory) -> None:
        self.bootstrap = bootstrap
        self._topic_factory = topic_factory

    def topic(self, partitions: int = 3) -> str:
        return self._topic_factory(partitions)

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        produce_messages(self.bootstrap, topic, messages)

    def producer(self, settings: WorkerSettings, **overrides):
        from worker.kafka.workarounds import Producer

        return Producer(**{**producer_config(settings), **overrides})

    def consumer(self, settings: WorkerSettings):
        return build_consumer(settings)

    def read(self, topic: str, count: int) -> list[tuple[bytes | None, bytes | None, list]]:
        records = consume_all(self.bootstrap, topic, count)
        return [(record.key, record.value, list(record.headers)) for record in records]

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return committed_offsets(self.bootstrap, group, topic)

    def exists(self, topic: str) -> bool:
        with admin_client(self.bootstrap) as admin:
            return not missing_topics(admin, [topic])

    def end_offsets(self, topic: str) -> dict[int, int]:
        return end_offsets(self.bootstrap, topic)


class _IgnoreRebalances(ConsumerRebalanceListener):
    def on_partitions_assigned(self, partitions) -> None:
        """The contract tests own the one member of their group."""

    def on_partitions_revoked(self, partitions) -> None:
        """Never called: nobody else joins."""


def settings_for(backend: MemoryBackend, **overrides) -> WorkerSettings:
    """Worker settings on three fresh topics of ``backend`` and a fresh group."""
    values = dict(bootstrap_servers=backend.bootstrap, input_topic=backend.topic(),
                  output_topic=backend.topic(), dlq_topic=backend.topic(),
                  group_id=f"group-{uuid.uuid4().hex[:10]}", model="/none", **FAST_GROUP)
    return load_settings(**{**values, **overrides})


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def backend(request) -> Iterator[MemoryBackend]:
    if request.param == "memory":
        yield MemoryBackend()
    else:
        yield KafkaBackend(request.getfixturevalue("kafka_bootstrap"),
                           request.getfixturevalue("topic_factory"))
