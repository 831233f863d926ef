"""The worker's three topics exist, or it does not start (and stops once one disappears).

Checked with an admin metadata request, which never auto-creates a topic (kafka-python's
consumer and producer may: see ``worker.kafka.workarounds``). Missing at start-up: exit code 2
naming the topics, unless ``create_topics`` asks to create them. Deleted while running: the
watchdog's periodic check stops the worker with a clear error (exit 1) instead of letting
``send()`` wait for metadata of a topic that will not come back.
"""

import logging
from collections.abc import Callable

from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from worker.runtime.periodic import Periodic
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


def ensure_topics(admin, settings: WorkerSettings) -> None:
    """Raise ``MissingTopics`` unless the three topics exist (or were just created)."""
    topics = worker_topics(settings)
    missing = missing_topics(admin, topics)
    if missing and settings.kafka.create_topics:
        kafka = settings.kafka
        try:
            admin.create_topics([
                NewTopic(name, kafka.create_topics_partitions,
                         kafka.create_topics_replication_factor)
                for name in missing
            ])
        except TopicAlreadyExistsError:
            pass  # another worker created it meanwhile
        logger.info("created topics %s (%d partitions)", ", ".join(missing),
                    kafka.create_topics_partitions,
                    extra={"event": "topics_created", "topics": missing})
        missing = missing_topics(admin, topics)
    if missing:
        raise MissingTopics(
            f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"do{'' if len(missing) > 1 else 'es'} not exist: create "
            f"{'them' if len(missing) > 1 else 'it'}, or start with --create-topics"
        )


class TopicWatch(Periodic):
    """Every ``interval_s``, on a thread of its own (an admin request may wait long for an
    unreachable broker): calls ``on_missing(topics)`` once some topic no longer exists."""

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
