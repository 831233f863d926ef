"""When each stage of the worker last made progress (read by the watchdog's thread)."""

import time
from collections.abc import Callable
from enum import StrEnum

from worker.runtime.metrics import WorkerMetrics


class Event(StrEnum):
    """A kind of progress."""

    FETCH = "fetch"
    BATCH = "batch scored"
    ACK = "acknowledgement"
    COMMIT = "commit"
    ASSIGNMENT = "assignment"


class Progress:
    """The monotonic time of the latest progress of each kind, and the wall-clock time of any in
    ``eurovoc_last_progress_timestamp_seconds``.

    Progress is: a fetch returned records, the model scored a batch, the broker acknowledged an
    output or a dead letter, an offset commit succeeded (and, to start the clock afresh,
    partitions were assigned). The steps and the processor mark it; the watchdog turns a worker
    that has work but no progress into a diagnosis, a 503 and an exit.
    """

    def __init__(
        self,
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._wall_clock = wall_clock
        self.started = clock()
        self.last: dict[Event, float] = {}
        # The clock starts now, as for the watchdog: not 1970 while the model loads.
        metrics.last_progress.set(wall_clock())

    def mark(self, event: Event) -> None:
        """Plain stores: safe to call from any thread."""
        self.last[event] = self._clock()
        self._metrics.last_progress.set(self._wall_clock())

    def latest(self) -> float:
        """Monotonic time of the latest progress of any kind (the start if none yet)."""
        return max(self.last.values(), default=self.started)

    def describe(self, now: float) -> str:
        """``"fetch 3.1s ago, batch scored never, ..."`` for a diagnosis."""
        return ", ".join(
            f"{event.value} {now - self.last[event]:.1f}s ago" if event in self.last
            else f"{event.value} never"
            for event in Event
        )
