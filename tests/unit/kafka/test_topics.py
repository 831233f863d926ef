"""The topic watch: a topic deleted while running is reported once; an unreachable broker is
not a deleted topic."""

import threading

from kafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

from worker.kafka.topics import TopicWatch


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
