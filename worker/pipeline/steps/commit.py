"""Commit step: acknowledged items advance their partition's watermark; offsets get committed."""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import MemberState, OffsetAndMetadata

from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.progress import Event, Progress
from worker.pipeline.work_items import WorkItem

logger = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]

_MIN_COMMIT_NOW_S = 0.1


class CommitsNow(Protocol):
    """What the processor and the rebalancer ask of the last step of the chain (the commit step,
    or with exactly-once the transaction step)."""

    def commit_now(self, partitions: Iterable[TopicPartition] | None = None,
                   timeout_s: float | None = None) -> bool:
        """Commit the watermarks of ``partitions`` (default: all) now; True once committed."""


def commit_now_timeout(commit_timeout_s: float, timeout_s: float | None) -> float:
    """How long a ``commit_now`` may take: the commit timeout, or ``timeout_s`` when shorter,
    and never under a tenth of a second."""
    limit = commit_timeout_s if timeout_s is None else min(timeout_s, commit_timeout_s)
    return max(_MIN_COMMIT_NOW_S, limit)


class CommitStep:
    """The last step of at-least-once: commits the contiguous watermarks as the consumer group's
    offsets.

    ``submit`` records an acknowledged item in the in-flight registry (which counts its outcome
    once). Every ``interval_s`` the watermarks go to ``consumer.commit_async`` (the loop never
    waits on the group coordinator; one commit in flight at a time; skipped while the group
    rebalances, since kafka-python can only fail it then); ``commit_now`` is a bounded
    synchronous ``consumer.commit``, when partitions are revoked and on shutdown. ``metadata``
    (the worker id, at most 200 characters) goes with every commit.
    """

    def __init__(
        self,
        registry: InFlightRegistry,
        consumer,
        *,
        metadata: str,
        interval_s: float,
        timeout_s: float,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._consumer = consumer
        self._metadata = metadata[:200]
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._progress = progress
        self._clock = clock
        self._next_commit = clock() + interval_s
        self._commit_in_flight = False
        self._failures = 0

    def submit(self, item: WorkItem) -> None:
        self._registry.acknowledged(item, self._clock())

    def poll(self) -> None:
        now = self._clock()
        if now >= self._next_commit:
            self._next_commit = now + self._interval_s
            offsets = self._registry.committable()
            if offsets:
                self._commit_async(offsets)

    def commit_now(self, partitions: Iterable[TopicPartition] | None = None,
                   timeout_s: float | None = None) -> bool:
        """Commit the watermarks of ``partitions`` (default: all) now, within
        :func:`commit_now_timeout`: on a revoke and on the way out."""
        offsets = self._registry.committable(partitions)
        if not offsets:
            return True
        timeout = commit_now_timeout(self._timeout_s, timeout_s)
        try:
            self._consumer.commit(self._request(offsets), timeout_ms=max(1, int(timeout * 1000)))
        except KafkaError as exc:
            logger.warning("offset commit failed (%r): the work after the last commit will be "
                           "read again", exc, extra={"event": "commit_failed"})
            return False
        self._committed(offsets)
        return True

    def _commit_async(self, offsets: Offsets) -> None:
        if self._commit_in_flight or self._consumer.group_metadata().state != MemberState.STABLE:
            return

        def done(_offsets, result) -> None:  # runs on this thread, inside consumer.poll()
            self._commit_in_flight = False
            if isinstance(result, BaseException):
                self._failures += 1
                if self._failures in (1, 10, 100) or self._failures % 1000 == 0:
                    logger.warning("offset commit failed %d times in a row (%r); retried every "
                                   "commit interval", self._failures, result,
                                   extra={"event": "commit_failed"})
                return
            if self._failures:
                logger.info("offset commits succeed again after %d failures", self._failures,
                            extra={"event": "commit_recovered"})
            self._failures = 0
            self._committed(offsets)

        self._commit_in_flight = True
        self._consumer.commit_async(self._request(offsets), callback=done)

    def _request(self, offsets: Offsets) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(offset, self._metadata, -1) for tp, offset in offsets.items()}

    def _committed(self, offsets: Offsets) -> None:
        self._registry.mark_committed(offsets)
        if self._progress is not None:
            self._progress.mark(Event.COMMIT)

    def join(self, timeout: float | None) -> None:
        self.commit_now(timeout_s=timeout)

    def close(self) -> None:
        """Nothing to release: the consumer belongs to the processor."""
