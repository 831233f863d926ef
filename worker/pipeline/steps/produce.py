"""Produce step: label messages and dead letters to their topics; acknowledged ones go on."""

import threading
from collections import deque

from kafka.errors import (
    AuthorizationError,
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from schemas.codec import encode_message
from worker.pipeline.progress import Event, Progress
from worker.pipeline.steps.base import MessageRejected, Step, join_then_next
from worker.pipeline.work_items import Output, SourceRef, WorkItem


def output_of(item: WorkItem, output_topic: str) -> Output:
    """The record to send for ``item``: its dead letter when it has one, else its label message
    to ``output_topic`` (key: the document id), built once and kept on the item."""
    if item.output is None:
        labels = item.labels
        item.output = Output(output_topic, labels.id.encode(), encode_message(labels))
    return item.output


class DeliveryFailed(RuntimeError):
    """An output or dead letter could not be delivered: the broker refused it for a reason no
    retry fixes (:data:`REFUSALS`), or the producer's retries ran out (``delivery_timeout_ms``)."""


REFUSALS = (AuthorizationError, MessageSizeTooLargeError, RecordListTooLargeError,
            InvalidRecordError, InvalidTopicError)
"""Errors no retry fixes (the topic's ACLs or limits, a record the broker will never take): the
producer does not retry them, and neither does the worker."""


class ProduceStep:
    """Sends each item's output and hands the acknowledged items to ``next_step`` (the commit
    step).

    Every output is sent at once (no ``flush()`` per batch) with a callback and an errback that
    only append to a deque and wake the processor (they run on the producer's IO thread); ``poll``
    takes the acknowledgements on the processor's thread and hands the items on.

    Delivery: the producer is idempotent with ``acks=all`` and retries a record by itself for up
    to ``delivery_timeout_ms`` without reordering it. A record that still fails is fatal:
    :class:`DeliveryFailed` is raised from ``poll``; its offset was never committed and later
    offsets of its partition are not either (the watermark stops at it), so the worker commits
    what was acknowledged and exits 1 — it never re-sends out of order itself.

    Bounded: kafka-python 3's producer buffers without limit, so the step holds at most
    ``max_buffer_bytes`` (``producer_buffer_bytes``) of unacknowledged outputs and rejects more
    (``MessageRejected``), which pauses the partitions.
    """

    def __init__(
        self,
        producer,
        next_step: Step,
        *,
        output_topic: str,
        max_buffer_bytes: int,
        wakeup: threading.Event,
        progress: Progress | None = None,
    ) -> None:
        self._producer = producer
        self._next = next_step
        self._topic = output_topic
        self._max_bytes = max_buffer_bytes
        self._wakeup = wakeup
        self._progress = progress
        self._completions: deque[tuple[WorkItem, int, BaseException | None]] = deque()
        self._pending_bytes = 0
        self._unacknowledged = 0

    def unacknowledged(self) -> int:
        return self._unacknowledged

    def submit(self, item: WorkItem) -> None:
        output = output_of(item, self._topic)
        size = len(output.value or b"") + len(output.key or b"")
        if self._pending_bytes and self._pending_bytes + size > self._max_bytes:
            raise MessageRejected
        try:
            future = self._producer.send(output.topic, value=output.value, key=output.key,
                                         headers=output.headers)
        except KafkaError as exc:  # no metadata within max_block_ms (the topic is gone), or
            # a record above max_request_size (kafka-python checks it inside send())
            raise DeliveryFailed(_failure(item, exc)) from exc
        self._pending_bytes += size
        self._unacknowledged += 1
        future.add_callback(self._on_acknowledged, item, size)
        future.add_errback(self._on_failed, item, size)

    # Run on the producer's IO thread: append and wake the processor, nothing else.
    def _on_acknowledged(self, item: WorkItem, size: int, _metadata) -> None:
        self._completions.append((item, size, None))
        self._wakeup.set()

    def _on_failed(self, item: WorkItem, size: int, exc: BaseException) -> None:
        self._completions.append((item, size, exc))
        self._wakeup.set()

    def poll(self) -> None:
        completions = self._completions
        acknowledged = False
        while completions:
            item, size, exc = completions.popleft()
            self._pending_bytes -= size
            self._unacknowledged -= 1
            if exc is not None:
                if not item.cancelled:
                    raise DeliveryFailed(_failure(item, exc))
                continue
            acknowledged = True
            self._next.submit(item)
        if acknowledged and self._progress is not None:
            self._progress.mark(Event.ACK)
        self._next.poll()

    def join(self, timeout: float | None) -> None:
        """Wait for the acknowledgement of everything sent, then join the commit step."""
        join_then_next(self.poll, self.unacknowledged, self._wakeup, timeout, self._next)

    def close(self) -> None:
        self._next.close()


def delivery_failure(output: Output, source: SourceRef | None, exc: BaseException) -> str:
    """What :class:`DeliveryFailed` says: the topic, the input record (partition and offset)
    and the reason, and whether a retry could have fixed it."""
    where = f"{source.topic}/{source.partition}@{source.offset}" if source else "a document"
    if isinstance(exc, REFUSALS):
        why = ("refused by the broker for a reason no retry fixes (fix the topic's ACLs or "
               "max.message.bytes; the record is read again after a restart)")
    else:
        why = "failed for good (the producer's own retries ran out within delivery_timeout_ms)"
    return f"delivery to topic {output.topic} failed: {why}, for {where}: {exc!r}"


def _failure(item: WorkItem, exc: BaseException) -> str:
    return delivery_failure(item.output, item.source, exc)
