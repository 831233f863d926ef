"""Per-partition contiguous offset watermarks.

Length-sorted batching completes documents out of order, so the committable offset of a partition
is not "the highest offset seen" but one past the last offset below which *every* received record
is done (its output or dead letter acknowledged by the broker). Offsets need not be consecutive
(compacted topics, transaction markers): the watermark follows the received records, not offset
arithmetic.

Only the loop thread uses these objects; they are not thread-safe.
"""

from collections import deque
from collections.abc import Iterable


class PartitionOffsets:
    """Received-but-unfinished offsets of one partition, in receipt (= offset) order."""

    __slots__ = ("_outstanding", "_done", "watermark", "committed")

    def __init__(self) -> None:
        self._outstanding: deque[int] = deque()
        self._done: set[int] = set()
        self.watermark: int | None = None
        """Next offset to consume after everything contiguous is done (the committable offset)."""
        self.committed: int | None = None
        """The last offset committed to the group coordinator (None: never, by this worker)."""

    def track(self, offset: int) -> None:
        if self._outstanding and offset <= self._outstanding[-1]:
            raise ValueError(f"offset {offset} is not above {self._outstanding[-1]}")
        if self.watermark is not None and offset < self.watermark:
            raise ValueError(f"offset {offset} is below the watermark {self.watermark}")
        self._outstanding.append(offset)

    def complete(self, offset: int) -> None:
        self._done.add(offset)

    def advance(self) -> int | None:
        """Move the watermark over the done prefix; return it (None if nothing was ever done)."""
        outstanding, done = self._outstanding, self._done
        while outstanding and outstanding[0] in done:
            offset = outstanding.popleft()
            done.discard(offset)
            self.watermark = offset + 1
        return self.watermark

    def pending(self) -> int:
        """Records received and not yet behind the watermark."""
        return len(self._outstanding)

    def dirty(self) -> bool:
        """True when the watermark is ahead of the last commit."""
        return self.watermark is not None and self.watermark != self.committed


class OffsetTracker:
    """Contiguous watermarks for every partition this worker reads (keys: any hashable)."""

    def __init__(self) -> None:
        self._partitions: dict[object, PartitionOffsets] = {}

    def partition(self, key: object) -> PartitionOffsets:
        state = self._partitions.get(key)
        if state is None:
            state = self._partitions[key] = PartitionOffsets()
        return state

    def track(self, key: object, offset: int) -> None:
        self.partition(key).track(offset)

    def complete(self, key: object, offset: int) -> None:
        state = self._partitions.get(key)
        if state is not None:
            state.complete(offset)

    def committable(self, keys: Iterable[object] | None = None) -> dict[object, int]:
        """Advance watermarks and return ``{key: offset}`` for those ahead of their last commit."""
        result = {}
        selected = self._partitions if keys is None else keys
        for key in selected:
            state = self._partitions.get(key)
            if state is None:
                continue
            state.advance()
            if state.dirty():
                result[key] = state.watermark
        return result

    def mark_committed(self, offsets: dict[object, int]) -> None:
        for key, offset in offsets.items():
            state = self._partitions.get(key)
            if state is not None:
                state.committed = offset

    def committed(self, key: object) -> int | None:
        state = self._partitions.get(key)
        return None if state is None else state.committed

    def pending(self, key: object | None = None) -> int:
        if key is not None:
            state = self._partitions.get(key)
            return 0 if state is None else state.pending()
        return sum(state.pending() for state in self._partitions.values())

    def forget(self, key: object) -> None:
        self._partitions.pop(key, None)

    def keys(self) -> list[object]:
        return list(self._partitions)
