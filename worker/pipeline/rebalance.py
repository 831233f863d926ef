"""Partition assignment and revocation: a listener that only records events, and their handling."""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import MemberState

from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.commit import CommitsNow
from worker.pipeline.work_items import WorkItem
from worker.runtime.http_endpoints import HealthState
from worker.runtime.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

_FINISH_WAIT_S = 0.05


class RebalanceKind(StrEnum):
    """What kafka-python told the listener about some partitions."""

    ASSIGNED = "assigned"
    REVOKED = "revoked"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class RebalanceEvent:
    """One listener callback, queued for the processor's thread."""

    kind: RebalanceKind
    partitions: frozenset[TopicPartition]


class QueueingRebalanceListener(ConsumerRebalanceListener):
    """Appends ``RebalanceEvent``s; ``drain()`` (loop thread) takes them in order.

    kafka-python 3.x invokes rebalance callbacks on its IO thread (the one that also sends
    heartbeats), inside the processor's ``consumer.poll()``. A blocking ``commit()`` from there
    fails ("Cannot block on net.run() from the IO thread") and any slow work there stalls
    heartbeats. So the listener only appends an event to a thread-safe deque and returns; the
    processor hands the events to :class:`Rebalancer` right after ``poll()`` returns.
    """

    def __init__(self) -> None:
        self._events: deque[RebalanceEvent] = deque()

    def _push(self, kind: RebalanceKind, partitions) -> None:
        self._events.append(RebalanceEvent(kind, frozenset(partitions or ())))

    def on_partitions_revoked(self, revoked) -> None:
        self._push(RebalanceKind.REVOKED, revoked)

    def on_partitions_assigned(self, assigned) -> None:
        self._push(RebalanceKind.ASSIGNED, assigned)

    def on_partitions_lost(self, lost) -> None:
        self._push(RebalanceKind.LOST, lost)

    def drain(self) -> list[RebalanceEvent]:
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    def has_events(self) -> bool:
        # Deliberately not __bool__: kafka-python tests ``if rebalance_listener:``.
        return bool(self._events)


class Rebalancer:
    """Applies rebalance events to the processor's assignment (the processor's thread only).

    * assigned: the partitions join the processor's assignment (paused if fetching is paused);
    * revoked (cooperative): their in-flight work is finished and committed before the next
      ``poll()``, which is what sends the follow-up JoinGroup that hands them to their new owner;
      their records still in the processor's ``backlog`` (fetched, never submitted) are
      abandoned; after ``revoke_deadline_s`` (or the drain deadline of a stop requested
      meanwhile) what is left is dropped uncommitted and read again by the new owner;
    * revoked (eager assignors): every partition is revoked before the join and the new
      assignment says which moved; the work of those is dropped uncommitted (duplicates are
      possible there);
    * lost: dropped at once, nothing committed (the group has moved on).
    """

    def __init__(
        self,
        consumer,
        registry: InFlightRegistry,
        commit: CommitsNow,
        *,
        cooperative: bool,
        revoke_deadline_s: float,
        poll_chain: Callable[[], None],
        drain_deadline: Callable[[], float | None],
        backlog: deque[WorkItem],
        wakeup: threading.Event,
        health: HealthState,
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._registry = registry
        self._commit = commit
        self._cooperative = cooperative
        self._revoke_deadline_s = revoke_deadline_s
        self._poll_chain = poll_chain
        self._drain_deadline = drain_deadline
        self._backlog = backlog
        self._wakeup = wakeup
        self._health = health
        self._metrics = metrics
        self._clock = clock
        self.assigned: set[TopicPartition] = set()
        self._eager_revoked: set[TopicPartition] = set()

    def handle(self, events: list[RebalanceEvent]) -> bool:
        """Apply the events; True when partitions were added (their pause state must be set)."""
        added = False
        for event in events:
            partitions = set(event.partitions)
            logger.info(
                "partitions %s: %s", event.kind.value, sorted(map(tuple, partitions)),
                extra={"event": f"partitions_{event.kind.value}",
                       "partitions": [f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)],
                       "generation": self._consumer.group_metadata().generation_id},
            )
            if event.kind is RebalanceKind.ASSIGNED:
                if not self._cooperative and self._eager_revoked:
                    self.drop(self._eager_revoked - partitions,
                              "moved to another member (eager rebalance)")
                    self._eager_revoked.clear()
                self.assigned |= partitions
                added = True
            elif event.kind is RebalanceKind.LOST:
                self.drop(partitions, "lost")
            elif self._cooperative:
                self._revoke(partitions & self.assigned)
            else:
                self._eager_revoked |= partitions & self.assigned
        self.update_membership()
        return added

    def update_membership(self) -> None:
        """Ready (``/readyz``) while it holds partitions and its membership is not lost."""
        state = self._consumer.group_metadata().state
        self._health.member = bool(self.assigned) and state != MemberState.UNJOINED

    def _revoke(self, partitions: set[TopicPartition]) -> None:
        if not partitions:
            return
        started = self._clock()
        for item in self._backlog:  # fetched, never submitted: read again by the next owner
            if TopicPartition(item.source.topic, item.source.partition) in partitions:
                self._registry.abandon(item)
        finished = self._finish(partitions, started + self._revoke_deadline_s)
        committed = self._commit.commit_now(partitions)
        left = self._registry.count(partitions)
        if left:
            logger.warning("revoke deadline passed: %d in-flight documents of %s dropped "
                           "uncommitted", left, sorted(map(tuple, partitions)),
                           extra={"event": "revoke_timeout"})
        self.drop(partitions, "revoked", log=False)
        logger.info("revoked partitions finished in %.2fs (finished=%s, committed=%s)",
                    self._clock() - started, finished, committed, extra={"event": "revoke_done"})

    def _finish(self, partitions: set[TopicPartition], deadline: float) -> bool:
        """Poll the chain (not the consumer) until none of ``partitions`` is in flight, until
        ``deadline``, or until the drain deadline of a stop requested meanwhile."""
        while self._registry.count(partitions):
            now = self._clock()
            drain_deadline = self._drain_deadline()
            if now >= (deadline if drain_deadline is None else min(deadline, drain_deadline)):
                return False
            self._health.tick(now)
            self._wakeup.clear()
            self._poll_chain()
            if self._registry.count(partitions):
                self._wakeup.wait(_FINISH_WAIT_S)
        return True

    def drop(self, partitions: set[TopicPartition], why: str, *, log: bool = True) -> None:
        """Forget partitions: their unfinished work is cancelled, never committed here."""
        if not partitions:
            return
        dropped = self._registry.drop(partitions)
        for tp in partitions:
            try:
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass
        self.assigned -= partitions
        self._eager_revoked -= partitions
        if log and dropped:
            logger.warning("partitions %s %s: %d in-flight documents dropped uncommitted",
                           sorted(map(tuple, partitions)), why, dropped,
                           extra={"event": "dropped"})
