"""Topics: the worker's start-up checks (they exist; the dead-letter topic's max.message.bytes
holds an accepted document's dead letter), creating those missing, and the topic watch (a topic
deleted while running is reported once; an unreachable broker is not a deleted topic)."""

import logging
import threading

import pytest
from kafka.admin import ConfigResourceType
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from schemas.dead_letter import dead_letter_bytes
from worker.app import DeadLetterTopicTooSmall, dead_letter_record_limit
from worker.kafka.topics import (
    BROKER_DEFAULT_MAX_MESSAGE_BYTES,
    MissingTopics,
    TopicWatch,
    create_missing_topics,
    ensure_topics,
    topic_max_message_bytes,
)
from worker.settings.worker_settings import WorkerSettings


class _Admin:
    """Answers describe_topics from a script: an exception to raise or the topics that exist."""

    def __init__(self, answers: list) -> None:
        self._answers = answers
        self.calls = 0

    def describe_topics(self, topics: list[str]) -> list[dict]:
        answer = self._answers[min(self.calls, len(self._answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return [{"name": name, "error_code": 0 if name in answer
                 else UnknownTopicOrPartitionError.errno} for name in topics]


class _Cluster:
    """An admin client over a set of topics: describe_topics and create_topics."""

    def __init__(self, *topics: str, created_meanwhile: bool = False) -> None:
        self.topics = set(topics)
        self.created: list[tuple[str, int, int]] = []
        self._created_meanwhile = created_meanwhile

    def describe_topics(self, topics: list[str]) -> list[dict]:
        return _Admin([self.topics]).describe_topics(topics)

    def create_topics(self, new_topics) -> None:
        self.topics.update(topic.name for topic in new_topics)
        if self._created_meanwhile:
            raise TopicAlreadyExistsError()
        self.created += [(t.name, t.num_partitions, t.replication_factor) for t in new_topics]


def _settings(**kafka) -> WorkerSettings:
    return WorkerSettings(kafka={"bootstrap_servers": "b:9092", "input_topic": "in",
                                 "output_topic": "out", "dlq_topic": "dlq", **kafka},
                          consumer={"group_id": "g"}, engine={"model": "m"})


def test_missing_topics_stop_the_start_naming_them_unless_asked_to_create_them():
    with pytest.raises(MissingTopics, match="^topics dlq, out do not exist: create them, or "
                                            "start with --create-topics$"):
        ensure_topics(_Cluster("in"), _settings())
    cluster = _Cluster("in")
    ensure_topics(cluster, _settings(create_topics=True, create_topics_partitions=4,
                                     create_topics_replication_factor=2))
    assert cluster.created == [("dlq", 4, 2), ("out", 4, 2)]


def test_only_missing_topics_are_created_and_a_concurrent_creation_is_no_error():
    cluster = _Cluster("a")
    assert create_missing_topics(cluster, ["a", "b"], 3, 1) == ["b"]
    assert cluster.created == [("b", 3, 1)]
    assert create_missing_topics(cluster, ["a", "b"], 3, 1) == []
    raced = _Cluster(created_meanwhile=True)
    assert create_missing_topics(raced, ["c"], 3, 1) == ["c"] and raced.topics == {"c"}


def test_a_deleted_topic_is_reported_once_after_an_outage_was_ridden_out():
    topics = ["in", "out", "dlq"]
    admin = _Admin([set(topics), KafkaConnectionError("down"), {"in", "dlq"}])
    reported: list[list[str]] = []
    done = threading.Event()

    def on_missing(missing: list[str]) -> None:
        reported.append(missing)
        done.set()

    watch = TopicWatch(admin, topics, on_missing, interval_s=0.01).start()
    try:
        assert done.wait(5)
        calls = admin.calls
        threading.Event().wait(0.1)
        assert reported == [["out"]] and admin.calls == calls  # once, then the watch ended
    finally:
        watch.stop()


def test_nothing_is_reported_while_every_topic_exists():
    topics = ["in", "out", "dlq"]
    admin = _Admin([set(topics)])
    reported: list[list[str]] = []
    watch = TopicWatch(admin, topics, reported.append, interval_s=0.01).start()
    threading.Event().wait(0.2)
    watch.stop()
    assert admin.calls >= 3 and reported == []


class _Configs:
    """An admin client answering describe_configs as kafka-python 3.0 does (a denied resource:
    no entries), or raising ``answer``."""

    def __init__(self, answer) -> None:
        self._answer = answer
        self.asked: list = []

    def describe_configs(self, resources, config_filter="modified"):
        self.asked.append(([(r.resource_type, r.name, r.configs) for r in resources],
                           config_filter))
        if isinstance(self._answer, Exception):
            raise self._answer
        return {"topic": {resources[0].name: self._answer}}


def test_a_topics_max_message_bytes_is_read_with_describe_configs():
    admin = _Configs({"max.message.bytes": {"value": "2097152", "config_source": "TOPIC"}})
    assert topic_max_message_bytes(admin, "dlq") == 2097152
    assert admin.asked == [([(ConfigResourceType.TOPIC, "dlq", ["max.message.bytes"])], "all")]


@pytest.mark.parametrize("answer", [{}, TopicAuthorizationFailedError(), KafkaTimeoutError()])
def test_an_unreadable_topic_config_falls_back_to_the_broker_default_logged(answer, caplog):
    assert topic_max_message_bytes(_Configs(answer), "dlq") == BROKER_DEFAULT_MAX_MESSAGE_BYTES
    [warning] = [r for r in caplog.records if getattr(r, "event", None) == "topic_config_unknown"]
    assert "dlq" in warning.getMessage() and "1048588" in warning.getMessage()


def _limits(**values) -> WorkerSettings:
    return WorkerSettings(kafka={"bootstrap_servers": "b:9092", "input_topic": "in",
                                 "output_topic": "out", "dlq_topic": "dlq"},
                          consumer={"group_id": "g", **values.pop("consumer", {})},
                          engine={"model": "m"}, **values)


def test_a_dead_letter_topic_too_small_for_an_accepted_document_stops_the_start():
    small = _Configs({"max.message.bytes": {"value": "1000000"}})
    with pytest.raises(DeadLetterTopicTooSmall, match=(
            r"^dead-letter topic dlq takes records of up to 1000000 bytes \(max.message.bytes\)"
            r".*max_message_bytes=1000000.*at least 1033792")):
        dead_letter_record_limit(small, _limits())
    # The defaults fit a topic of the broker's default size.
    assert dead_letter_record_limit(_Configs({}), _limits()) == 1024 * 1024  # max_request_size
    big = _Configs({"max.message.bytes": {"value": str(8 * 1024 * 1024)}})
    assert dead_letter_record_limit(big, _limits(
        consumer={"max_message_bytes": 4_000_000},
        dead_letters={"dlq_max_value_bytes": 5_000_000})) == dead_letter_bytes(5_000_000)


def test_the_topic_watch_outlives_any_exception_in_a_check(caplog):
    """A bug in a round (a malformed answer, an error that is not kafka-python's) is logged once
    and the watch goes on: a topic deleted afterwards is still reported."""
    topics = ["in", "out", "dlq"]
    admin = _Admin([RuntimeError("admin client closed"), RuntimeError("admin client closed"),
                    SystemExit(1), set(topics), {"in", "out"}])
    reported: list[list[str]] = []
    done = threading.Event()

    def on_missing(missing: list[str]) -> None:
        reported.append(missing)
        done.set()

    with caplog.at_level(logging.WARNING, logger="worker.runtime.periodic"):
        watch = TopicWatch(admin, topics, on_missing, interval_s=0.01).start()
        try:
            assert done.wait(5)
        finally:
            watch.stop()
    assert reported == [["dlq"]]
    assert [record.event for record in caplog.records] == [
        "check_failed", "check_failed", "check_recovered"]
    assert "RuntimeError: admin client closed" in caplog.records[0].getMessage()
