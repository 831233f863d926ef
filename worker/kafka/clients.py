"""Build kafka-python clients from ``WorkerSettings`` (the only place that knows their options)."""

from typing import Any

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from schemas.dead_letter import dead_letter_bytes
from worker.kafka.workarounds import GroupConsumer, Producer
from worker.settings.kafka_connection import KafkaConnectionSettings
from worker.settings.worker_settings import WorkerSettings

_ASSIGNORS = {
    "cooperative-sticky": CooperativeStickyAssignor,
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "sticky": StickyPartitionAssignor,
}


def is_cooperative(settings: WorkerSettings) -> bool:
    return settings.consumer.assignment_strategy == "cooperative-sticky"


def security_config(settings: KafkaConnectionSettings, client_id: str) -> dict[str, Any]:
    """Connection and security options shared by every client (the worker's and replay-dlq's)."""
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()],
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
        "bootstrap_timeout_ms": max(settings.request_timeout_ms, 10_000),
        # kafka-python backs off up to 30 s between reconnects (Java: 1 s): after a broker
        # restart the worker would idle that long.
        "reconnect_backoff_max_ms": 5000,
    }
    if settings.security_protocol.startswith("SASL"):
        config["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_username is not None:
            config["sasl_plain_username"] = settings.sasl_username
        password = settings.read_sasl_password()
        if password is not None:
            config["sasl_plain_password"] = password.get_secret_value()
    if settings.security_protocol.endswith("SSL"):
        config["ssl_check_hostname"] = settings.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(settings, name)
            if value is not None:
                config[name] = str(value)
        if settings.ssl_password is not None:
            config["ssl_password"] = settings.ssl_password.get_secret_value()
    return config


def consumer_config(worker: WorkerSettings) -> dict[str, Any]:
    config = security_config(worker.kafka, worker.operations.worker_id)
    settings = worker.consumer
    config.update(
        group_id=settings.group_id,
        group_instance_id=settings.group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        # Assignor *instances*, alone: kafka-python's default is [Range, RoundRobin] and eager
        # and cooperative assignors cannot be mixed.
        partition_assignment_strategy=[_ASSIGNORS[settings.assignment_strategy]()],
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        max_poll_records=settings.max_poll_records,
        fetch_max_bytes=settings.fetch_max_bytes,
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        # One frame may carry a whole fetch; anything far bigger is a broken or hostile peer.
        receive_message_max_bytes=settings.fetch_max_bytes + settings.max_partition_fetch_bytes
        + 1024 * 1024,
        check_crcs=True,
        allow_auto_create_topics=False,
        # exactly-once: never read another worker's aborted or open transactions (a chain of
        # workers composes); read_committed offsets wait for pending transactional commits.
        isolation_level="read_committed" if worker.exactly_once else "read_uncommitted",
    )
    return config


MAX_BLOCK_MS = 5000
"""Longest a ``send()`` blocks the loop: only when metadata is missing (topics are checked and
their metadata fetched at start-up, so: the topic was deleted); never for a full buffer (see
``ProduceStep``)."""


def producer_max_request_size(worker: WorkerSettings) -> int:
    """The producer's ``max_request_size``: what is configured, raised to hold the largest dead
    letter (``dlq_max_value_bytes`` with the bounded key and headers); kafka-python's ``send()``
    checks each record's uncompressed size against it."""
    return max(worker.producer.max_request_size,
               dead_letter_bytes(worker.dead_letters.dlq_max_value_bytes))


def producer_config(worker: WorkerSettings) -> dict[str, Any]:
    config = security_config(worker.kafka, worker.operations.worker_id)
    settings = worker.producer
    config.update(
        acks="all",
        enable_idempotence=True,
        compression_type=None if settings.compression_type == "none" else settings.compression_type,
        linger_ms=settings.linger_ms,
        batch_size=settings.producer_batch_bytes,
        max_request_size=producer_max_request_size(worker),
        delivery_timeout_ms=settings.delivery_timeout_ms,
        max_in_flight_requests_per_connection=5,
        max_block_ms=MAX_BLOCK_MS,
        allow_auto_create_topics=False,
    )
    if worker.exactly_once:
        config.update(transactional_id=worker.transactional_id,
                      transaction_timeout_ms=settings.transaction_timeout_ms)
    return config


def build_consumer(settings: WorkerSettings) -> GroupConsumer:
    return GroupConsumer(**consumer_config(settings))


def build_producer(settings: WorkerSettings) -> Producer:
    return Producer(**producer_config(settings))
