"""The dead-letter limit: it stops a worker which would dead-letter everything."""

from collections import deque
from collections.abc import Iterable

from kafka import TopicPartition


class DlqCounter:
    """The dead-letter counts of one partition, fed its records' outcomes in offset order:
    the run of consecutive dead letters and the dead letters among the last ``window`` records.
    """

    __slots__ = ("consecutive", "_recent", "_bad_in_window")

    def __init__(self, window: int) -> None:
        self.consecutive = 0
        self._recent: deque[bool] = deque(maxlen=window)
        self._bad_in_window = 0

    def seen_with_one_more(self) -> tuple[int, int]:
        """(records, dead letters) of the window if one more dead letter entered it."""
        recent = self._recent
        full = len(recent) == recent.maxlen
        bad = self._bad_in_window + 1 - (1 if full and recent[0] else 0)
        return min(len(recent) + 1, recent.maxlen), bad

    def push(self, bad: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._bad_in_window -= 1
        recent.append(bad)
        if bad:
            self._bad_in_window += 1
            self.consecutive += 1
        else:
            self.consecutive = 0


class DlqPolicy:
    """Judges each record once, per partition, in offset order (after Arroyo's ``DlqLimit``):
    too many dead letters in a row, or too large a share of a partition's recent records, means
    something is systematically wrong (a wrong topic, a broken model), and the worker must stop
    instead of draining its input into the dead-letter topic.

    The rule, per partition of this worker (its counts start afresh when it is assigned):

    * ``max_consecutive`` (0 disables): the dead letter that would be the ``max_consecutive``-th
      in a row is refused;
    * ``max_ratio`` (>= 1.0 disables): the dead letter that would make the dead letters among the
      partition's last ``min(seen, window)`` records (it included) reach ``max_ratio`` is
      refused, once at least ``min(window, min_samples)`` records were seen (so the first bad
      record of a fresh worker does not count as 100 %).

    A refused dead letter is not counted: :meth:`judge` returns the cause. The caller feeds every
    record exactly once, when its outcome is known, in its partition's offset order (the
    dead-letter step does, through ``InFlightRegistry.settle``).
    """

    def __init__(
        self,
        max_consecutive: int = 100,
        max_ratio: float = 0.5,
        window: int = 1000,
        min_samples: int = 100,
    ) -> None:
        self.max_consecutive = max_consecutive
        self.max_ratio = max_ratio
        self.window = window
        self.min_samples = min(min_samples, window)
        self._counters: dict[TopicPartition, DlqCounter] = {}

    def judge(self, partition: TopicPartition, reason: str | None) -> str | None:
        """Count the next record of ``partition``: labelled (``reason`` None) or a dead letter
        of ``reason``. Returns why that dead letter breaks the limit (then nothing is counted),
        else None."""
        counter = self._counters.get(partition)
        if counter is None:
            counter = self._counters[partition] = DlqCounter(self.window)
        if reason is not None:
            cause = self._breaks(counter, reason)
            if cause is not None:
                return f"{cause} in {partition.topic}/{partition.partition}"
        counter.push(reason is not None)
        return None

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the counts of partitions that left this worker (revoked, lost)."""
        for partition in partitions:
            self._counters.pop(partition, None)

    def _breaks(self, counter: DlqCounter, reason: str) -> str | None:
        consecutive = counter.consecutive + 1
        if self.max_consecutive and consecutive >= self.max_consecutive:
            return (f"dead-letter limit: {consecutive} consecutive records dead-lettered "
                    f"(limit {self.max_consecutive}; last reason {reason})")
        if self.max_ratio < 1.0:
            seen, bad = counter.seen_with_one_more()
            if seen >= self.min_samples and bad / seen >= self.max_ratio:
                return (f"dead-letter limit: {bad} of the last {seen} records dead-lettered "
                        f"({bad / seen:.0%} >= {self.max_ratio:.0%}; last reason {reason})")
        return None
