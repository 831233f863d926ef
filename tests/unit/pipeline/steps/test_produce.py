"""Produce step (at-least-once): what a failed delivery says, on the in-memory Kafka."""

import pytest
from kafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)
from kafka.future import Future

from tests.unit.pipeline.test_processor import P0, TOPIC, doc, make
from worker.pipeline.processor import ExitCode


def refusing(rig, topic: str, error: Exception) -> None:
    """The broker refuses every record sent to ``topic`` with ``error`` (its future fails)."""
    send = rig.producer.send

    def refuse(to, value=None, key=None, headers=None):
        if to != topic:
            return send(to, value=value, key=key, headers=headers)
        return Future().failure(error)

    rig.producer.send = refuse


@pytest.mark.parametrize("error", [TopicAuthorizationFailedError("dlq"),
                                   MessageSizeTooLargeError("above max.message.bytes")])
def test_a_refused_dead_letter_stops_the_worker_naming_topic_record_and_reason(error):
    rig = make({0: [doc(0), b"not json", doc(2)]})
    refusing(rig, "dlq", error)
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.FATAL
    assert outcome.message.startswith(
        "DeliveryFailed: delivery to topic dlq failed: refused by the broker for a reason no "
        "retry fixes")
    assert f"{TOPIC}/0@1" in outcome.message and type(error).__name__ in outcome.message
    assert rig.consumer.committed_now().get(P0, 0) <= 1  # never past the refused record


def test_a_delivery_that_timed_out_says_the_retries_ran_out():
    rig = make({0: [doc(0)]}, producer={"fail_first": 1})
    outcome = rig.run()
    assert outcome.exit_code == ExitCode.FATAL
    assert "delivery to topic out failed: failed for good (the producer's own retries ran out " \
           "within delivery_timeout_ms)" in outcome.message
    assert repr(KafkaTimeoutError("delivery timed out")) in outcome.message
