"""Rebalance listener that only records events for the loop thread.

kafka-python 3.x invokes rebalance callbacks on its IO thread (the one that also sends
heartbeats), while the loop thread is blocked inside ``consumer.poll()``. A blocking
``commit()`` from there fails ("Cannot block on net.run() from the IO thread") and any slow work
there stalls heartbeats. So the callbacks append an event to a thread-safe deque and return; the
loop thread handles the events right after ``poll()`` returns: it finishes and commits the work
of revoked partitions before it calls ``poll()`` again, which is what lets the group's follow-up
(cooperative) rebalance hand those partitions to their new owner.
"""

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from kafka import ConsumerRebalanceListener, TopicPartition


class RebalanceKind(StrEnum):
    ASSIGNED = "assigned"
    REVOKED = "revoked"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class RebalanceEvent:
    kind: RebalanceKind
    partitions: frozenset[TopicPartition]


class QueueingRebalanceListener(ConsumerRebalanceListener):
    """Appends ``RebalanceEvent``s; ``drain()`` (loop thread) takes them in order."""

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
