"""Topics: which exist, creating those missing (every command that creates topics: ``run
--create-topics``, ``produce --partitions``), and the worker's check of its three topics, at
start-up and while it runs.

Existence is asked with an admin metadata request, which never auto-creates a topic
(kafka-python's consumer and producer may: see ``worker.kafka.workarounds``).
"""

import logging
from collections.abc import Callable

from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from worker.kafka.access import connect_admin
from worker.runtime.periodic import Periodic
from worker.settings.kafka_connection import KafkaConnectionSettings
from worker.settings.worker_settings import WorkerSettings

logger = logging.getLogger(__name__)


class MissingTopics(RuntimeError):
    """Topics the worker needs do not exist (the message names them)."""


def worker_topics(settings: WorkerSettings) -> list[str]:
    kafka = settings.kafka
    return [kafka.input_topic, kafka.output_topic, kafka.dlq_topic]


def missing_topics(admin, topics: list[str]) -> list[str]:
    """The ones among ``topics`` the cluster does not know (raises ``KafkaError`` when it cannot
    be asked)."""
    described = admin.describe_topics(topics)
    unknown = UnknownTopicOrPartitionError.errno
    return sorted(entry["name"] for entry in described if entry.get("error_code") == unknown)


def create_missing_topics(admin, topics: list[str], partitions: int,
                          replication_factor: int) -> list[str]:
    """Create those of ``topics`` the cluster does not know, with ``partitions`` partitions and
    ``replication_factor`` replicas each; return their names (created by us or, meanwhile, by
    another client)."""
    missing = missing_topics(admin, topics)
    if not missing:
        return missing
    try:
        admin.create_topics([NewTopic(name, partitions, replication_factor) for name in missing])
    except TopicAlreadyExistsError:
        pass  # another client created it meanwhile
    logger.info("created topics %s (%d partitions)", ", ".join(missing), partitions,
                extra={"event": "topics_created", "topics": missing})
    return missing


def create_topics(connection: KafkaConnectionSettings, topics: list[str], partitions: int,
                  *, client_id: str, replication_factor: int = 1) -> list[str]:
    """:func:`create_missing_topics` through an admin client of its own, connected with
    ``connection`` (brokers, timeouts, SASL/TLS; raises ``KafkaAccessDenied`` or
    ``KafkaUnreachable`` from :func:`worker.kafka.access.connect_admin`)."""
    admin = connect_admin(connection, client_id)
    try:
        return create_missing_topics(admin, topics, partitions, replication_factor)
    finally:
        admin.close()


def ensure_topics(admin, settings: WorkerSettings) -> None:
    """The worker's three topics exist, or it does not start: raise ``MissingTopics`` (exit
    code 2, naming them) unless they exist, or ``create_topics`` asks to create them."""
    kafka = settings.kafka
    topics = worker_topics(settings)
    if kafka.create_topics:
        create_missing_topics(admin, topics, kafka.create_topics_partitions,
                              kafka.create_topics_replication_factor)
    missing = missing_topics(admin, topics)
    if missing:
        raise MissingTopics(
            f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"do{'' if len(missing) > 1 else 'es'} not exist: create "
            f"{'them' if len(missing) > 1 else 'it'}, or start with --create-topics"
        )


BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default ``message.max.bytes`` (a topic's ``max.message.bytes`` when not set)."""
_MAX_MESSAGE_BYTES = "max.message.bytes"


def topic_max_message_bytes(admin, topic: str) -> int:
    """The topic's ``max.message.bytes`` (DescribeConfigs): the largest record batch the broker
    takes for it. When it cannot be read (DescribeConfigs denied: an ACL without
    DESCRIBE_CONFIGS; an old broker), Kafka's default, logged as a warning."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, [_MAX_MESSAGE_BYTES])
    try:
        described = admin.describe_configs([resource], config_filter="all")
    except KafkaError as exc:
        reason = repr(exc)
    else:
        # kafka-python leaves a resource's error code unchecked: a denied one has no entries.
        entry = described.get("topic", {}).get(topic, {}).get(_MAX_MESSAGE_BYTES, {})
        value = str(entry.get("value"))
        if value.isdigit():
            return int(value)
        reason = "not in the broker's answer (DescribeConfigs denied for the topic?)"
    logger.warning("cannot read %s of topic %s: %s; assuming the broker default, %d bytes",
                   _MAX_MESSAGE_BYTES, topic, reason, BROKER_DEFAULT_MAX_MESSAGE_BYTES,
                   extra={"event": "topic_config_unknown", "topic": topic})
    return BROKER_DEFAULT_MAX_MESSAGE_BYTES


class TopicWatch(Periodic):
    """A topic deleted while the worker runs stops it with a clear error (exit 1), instead of
    letting ``send()`` wait for metadata of a topic that will not come back.

    Every ``interval_s``, on a thread of its own (an admin request may wait long for an
    unreachable broker): calls ``on_missing(topics)`` once some topic no longer exists, and
    ends. An unreachable broker is not a deleted topic (the watchdog reports outages); anything
    else a round raises is logged and the watch goes on (``Periodic``)."""

    def __init__(self, admin, topics: list[str], on_missing: Callable[[list[str]], None],
                 interval_s: float = 30.0) -> None:
        self._admin = admin
        self._topics = topics
        self._on_missing = on_missing
        super().__init__("eurovoc-topic-watch", interval_s)

    def tick(self) -> bool:
        try:
            missing = missing_topics(self._admin, self._topics)
        except KafkaError:
            return True  # unreachable: the outage is the watchdog's to report
        if missing:
            self._on_missing(missing)
            return False
        return True
