"""The in-flight registry: every consumed record, in offset order, until it is committed."""

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from kafka import TopicPartition

from worker.pipeline.work_items import Stage, WorkItem
from worker.runtime.metrics import WorkerMetrics


class _Partition:
    """One partition's items in offset order, what of them was acknowledged, and its offsets."""

    __slots__ = ("items", "acked", "watermark", "committed", "first_offset", "unacked",
                 "unsettled", "outcomes")

    def __init__(self) -> None:
        self.items: deque[WorkItem] = deque()  # in offset order
        self.unsettled: deque[WorkItem] = deque()  # in offset order, outcome not yet settled
        self.outcomes: dict[int, bool] = {}  # known outcomes (dead letter?) waiting their turn
        self.acked: set[int] = set()  # offsets acknowledged (or abandoned: see abandon())
        self.watermark: int | None = None  # the committable offset
        self.committed: int | None = None  # the last offset committed by this worker
        self.first_offset: int | None = None  # of the first record read (lag before a commit)
        self.unacked = 0


class InFlightRegistry:
    """Every consumed record, per partition in offset order, from ``poll()`` until it is committed.

    A record is added when ``poll()`` returns it and stays here (and nowhere else) until its output
    or dead letter was acknowledged *and* every record before it in its partition was too: then
    its offset is behind the partition's *contiguous watermark*, the offset that may be committed.
    Length-sorted batching finishes documents out of order, so the watermark is never "the highest
    offset seen" but one past the last record below which all are acknowledged; it follows the
    records, not offset arithmetic (compacted topics and transaction markers leave gaps).

    Each record's outcome (produced, or dead-lettered with a reason) is counted here, once, when
    it is acknowledged (exactly-once: when its transaction commits); a record of a revoked or
    lost partition is cancelled and never counted. Outcomes are also *settled* in offset order
    (:meth:`settle`), which is what the dead-letter limit judges. The raw bytes of every record
    read and not yet acknowledged (:meth:`bytes`) are the processor's byte budget
    (``max_in_flight_bytes``).

    Only the processor's thread uses the registry (the engine only reads ``WorkItem.cancelled``).
    """

    def __init__(self, metrics: WorkerMetrics,
                 on_drop: Callable[[list[TopicPartition]], None] | None = None) -> None:
        self._metrics = metrics
        self._on_drop = on_drop  # told the partitions forgotten (the dead-letter limit's counts)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._count = 0
        self._bytes = 0

    # -- records in ---------------------------------------------------------------------------

    def add(self, partition: TopicPartition, item: WorkItem) -> None:
        """Track a record just returned by ``poll()`` (offsets must increase per partition)."""
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = _Partition()
        offset = item.source.offset
        if state.items and offset <= state.items[-1].source.offset:
            raise ValueError(f"{partition}: offset {offset} is not above "
                             f"{state.items[-1].source.offset}")
        if state.watermark is not None and offset < state.watermark:
            raise ValueError(f"{partition}: offset {offset} is below the watermark")
        if state.first_offset is None:
            state.first_offset = offset
        state.items.append(item)
        state.unsettled.append(item)
        state.unacked += 1
        self._count += 1
        self._bytes += record_bytes(item)

    # -- outcomes -----------------------------------------------------------------------------

    def settle(self, item: WorkItem, dead_letter: bool) -> list[tuple[WorkItem, bool]]:
        """``item``'s outcome is known (labelled, or ``dead_letter``): return the records of its
        partition whose outcomes are now settled in offset order, each with whether it is a dead
        letter: ``item`` and the ones after it that waited for it, or nothing while a record
        before it is still undecided. Each record is returned once (nothing for a cancelled
        one)."""
        state = self._state_of(item)
        if state is None or item.cancelled:
            return []
        state.outcomes[item.source.offset] = dead_letter
        settled, waiting, outcomes = [], state.unsettled, state.outcomes
        while waiting and waiting[0].source.offset in outcomes:
            head = waiting.popleft()
            settled.append((head, outcomes.pop(head.source.offset)))
        return settled

    def acknowledged(self, item: WorkItem, now: float, *, count: bool = True) -> bool:
        """The broker acknowledged the item's output or dead letter (exactly-once: the
        transaction step staged it): count its outcome once (:meth:`count_outcome`) unless
        ``count`` is False (the transaction step counts it when its transaction commits).

        False (and nothing counted) for an item that was cancelled meanwhile.
        """
        if item.cancelled:
            return False
        state = self._state_of(item)
        offset = item.source.offset
        if state is None or offset in state.acked:
            return False
        state.acked.add(offset)
        state.unacked -= 1
        self._count -= 1
        self._bytes -= record_bytes(item)
        item.enter(Stage.COMMIT)
        if count:
            self.count_outcome(item, now)
        item.value = item.labels = item.output = item.document = None  # no longer needed
        return True

    def count_outcome(self, item: WorkItem, now: float) -> None:
        """Count the item as produced (with its end-to-end latency) or as dead-lettered."""
        metrics = self._metrics
        if item.rejection is None:
            metrics.produced.inc()
            metrics.end_to_end_seconds.observe(now - item.received_at)
        else:
            metrics.dead_lettered.labels(item.rejection.error_type.value).inc()

    def abandon(self, item: WorkItem) -> None:
        """Leave ``item`` unfinished for good (the worker is stopping on the dead-letter limit):
        it no longer counts as in flight, and its partition's watermark never passes it."""
        state = self._state_of(item)
        if state is not None and not item.cancelled and item.source.offset not in state.acked:
            item.cancelled = True
            state.unacked -= 1
            self._count -= 1
            self._bytes -= record_bytes(item)

    # -- partitions -----------------------------------------------------------------------------

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget partitions (revoked or lost): their unfinished items are cancelled, never
        committed here. Returns how many unfinished items were dropped."""
        dropped, forgotten = 0, []
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is None:
                continue
            forgotten.append(partition)
            for item in state.items:
                if not item.cancelled and item.source.offset not in state.acked:
                    dropped += 1
                    self._bytes -= record_bytes(item)
                item.cancelled = True
            self._count -= state.unacked
        if forgotten and self._on_drop is not None:
            self._on_drop(forgotten)
        return dropped

    def committable(self, partitions: Iterable[TopicPartition] | None = None
                    ) -> dict[TopicPartition, int]:
        """Advance the watermarks; ``{partition: offset}`` where it is ahead of the last commit."""
        out = {}
        for partition in self._partitions if partitions is None else partitions:
            state = self._partitions.get(partition)
            if state is None:
                continue
            items, acked = state.items, state.acked
            while items and items[0].source.offset in acked and not items[0].cancelled:
                offset = items.popleft().source.offset
                acked.discard(offset)
                state.watermark = offset + 1
            if state.watermark is not None and state.watermark != state.committed:
                out[partition] = state.watermark
        return out

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None and (state.committed is None or offset > state.committed):
                state.committed = offset  # a late asynchronous commit never moves it back

    # -- questions ------------------------------------------------------------------------------

    def count(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        """Items read and not yet acknowledged (abandoned ones excluded)."""
        if partitions is None:
            return self._count
        return sum(self._partitions[p].unacked for p in partitions if p in self._partitions)

    def bytes(self) -> int:
        """Raw bytes (keys, values, headers) of the items read and not yet acknowledged."""
        return self._bytes

    def committed(self, partition: TopicPartition) -> int | None:
        """The last offset this worker committed in ``partition`` (None: none yet)."""
        state = self._partitions.get(partition)
        return None if state is None else state.committed

    def uncommitted_from(self, partition: TopicPartition) -> int | None:
        """Where this worker's uncommitted records of ``partition`` begin: its last commit, else
        the first offset it read (None: nothing read). Consumer lag counts from here, and an
        aborted transaction seeks back to it."""
        state = self._partitions.get(partition)
        if state is None:
            return None
        return state.first_offset if state.committed is None else state.committed

    def oldest(self) -> WorkItem | None:
        """The unacknowledged item read longest ago."""
        return min(self._unacked(), key=lambda item: item.received_at, default=None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._partitions)

    def _unacked(self) -> Iterator[WorkItem]:
        for state in self._partitions.values():
            for item in state.items:
                if not item.cancelled and item.source.offset not in state.acked:
                    yield item
                    break  # offset order: the first unacknowledged one is the partition's oldest

    def _state_of(self, item: WorkItem) -> _Partition | None:
        source = item.source
        return self._partitions.get(TopicPartition(source.topic, source.partition))


def record_bytes(item: WorkItem) -> int:
    """What a record read weighs in the byte budget: its key, value and headers (raw bytes).
    Only the registry releases ``value`` and the key and headers never change, so the weight
    counted in is the weight counted out."""
    size = len(item.key or b"") + len(item.value or b"")
    for name, value in item.headers or ():
        size += len(name) + len(value or b"")
    return size
