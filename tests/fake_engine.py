"""An inference-engine test double: results on demand, in any order, failing chosen documents."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.labels import LabelsMessage, ModelInfo
from worker.inference.requests import EngineResult
from worker.pipeline.work_items import WorkItem


class _Settings:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight


class FakeEngine:
    """``release(n)`` finishes the n oldest documents (newest first with ``reverse``); with
    ``auto`` every submitted document is finished at once. Cancelled ones are dropped without a
    result, as the real engine does."""

    def __init__(self, auto: bool = True, reverse: bool = False, fail_ids=(),
                 max_in_flight: int = 256) -> None:
        self.auto, self.reverse, self.fail_ids = auto, reverse, set(fail_ids)
        self.settings = _Settings(max_in_flight)
        self.queue: list[WorkItem] = []
        self.ready: list[EngineResult] = []
        self.on_results = None

    def submit(self, items) -> None:
        self.queue.extend(items)
        if self.auto:
            self.release(len(self.queue))

    def finish(self, ids) -> None:
        """Finish the queued documents of these ids (in the order given)."""
        by_id = {item.document.id: item for item in self.queue}
        taken = [by_id[doc_id] for doc_id in ids]
        self.queue = [item for item in self.queue if item not in taken]
        self._results(taken)

    def release(self, n: int) -> None:
        taken, self.queue = self.queue[:n], self.queue[n:]
        self._results(taken)

    def _results(self, taken: list[WorkItem]) -> None:
        if self.reverse:
            taken.reverse()
        for item in taken:
            if item.document.id in self.fail_ids:
                self.ready.append(EngineResult(item, None, "boom"))
            else:
                self.ready.append(EngineResult(item, labels(item), None))
        if taken and self.on_results is not None:
            self.on_results()

    def poll_results(self, timeout: float = 0.0) -> list[EngineResult]:
        out = [result for result in self.ready if not result.item.cancelled]
        self.ready = []
        return out

    def pending(self) -> int:
        self.queue = [item for item in self.queue if not item.cancelled]
        return len(self.queue) + len(self.ready)

    def healthy(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 10.0) -> None:
        pass


def labels(item: WorkItem) -> LabelsMessage:
    return LabelsMessage(
        id=item.document.id, labels=[], scores={}, thresholds={},
        model=ModelInfo(name="m", version="1", sha256="0" * 64), truncated=False, chunks=1,
        tokens=3, source=item.source, produced_at=datetime.now(UTC),
    )
