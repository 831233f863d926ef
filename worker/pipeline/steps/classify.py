"""Classify step: decoded documents into the inference engine, labelled ones out.

Its capacity is the worker's one capacity knob, ``max_in_flight``: the documents it holds
(buffered for the engine, queued, tokenized, batched, being scored, finished but not yet taken
by the next step). At that bound ``submit`` raises ``MessageRejected`` and the processor pauses
fetching. Documents are buffered and handed to the engine in groups on ``poll`` (the tokenizer
encodes a group in one call). Results come back in any order: a labelled document goes to
``next_step``, one the engine could not score to ``failed``; cancelled ones are dropped.

Used by the Kafka worker (next: produce, failed: dead letters) and by ``eurovoc-worker
classify`` on files (next: the ordered file writer, failed: the error log).
"""

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from schemas.dead_letter import ErrorType
from worker.pipeline.progress import Event, Progress
from worker.pipeline.steps.base import MessageRejected, Step, join_then_next
from worker.pipeline.work_items import Rejection, Stage, WorkItem

_SUBMIT_GROUP = 32
"""Documents handed to the engine in one call (the tokenizer encodes a group at once)."""


class Engine(Protocol):
    """What the step needs of ``worker.inference.engine.InferenceEngine`` (a test double provides it too)."""

    def submit(self, items: list[WorkItem]) -> None: ...
    def poll_results(self, timeout: float = 0.0) -> list: ...
    def pending(self) -> int: ...


class ClassifyStep:
    def __init__(
        self,
        engine: Engine,
        next_step: Step,
        failed: Step,
        *,
        max_in_flight: int,
        wakeup: threading.Event,
        progress: Progress | None = None,
        on_labelled: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._next = next_step
        self._failed = failed
        self._capacity = max_in_flight
        self._wakeup = wakeup
        self._progress = progress
        self._on_labelled = on_labelled
        self._buffer: list[WorkItem] = []  # accepted, not yet handed to the engine
        self._ready: deque[WorkItem] = deque()  # classified, not yet taken by the next step

    def held(self) -> int:
        return len(self._buffer) + self._engine.pending() + len(self._ready)

    def submit(self, item: WorkItem) -> None:
        if self.held() >= self._capacity:
            raise MessageRejected
        self._buffer.append(item)
        if len(self._buffer) >= _SUBMIT_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._engine.submit(self._buffer)
            self._buffer = []

    def poll(self) -> None:
        self._flush()
        results = self._engine.poll_results(0.0)
        if results:
            if self._progress is not None:
                self._progress.mark(Event.BATCH)
            for result in results:
                item = result.item
                if result.error is None:
                    item.labels = result.message
                else:
                    item.rejection = Rejection(ErrorType.INFERENCE, result.error)
                self._ready.append(item)
        try:
            self._hand_on()
        except MessageRejected:
            pass  # the next step is full: the item stays first in line until its poll frees room
        self._next.poll()

    def _hand_on(self) -> None:
        ready = self._ready
        while ready:
            item = ready[0]
            if not item.cancelled:
                if item.rejection is not None:
                    self._failed.submit(item)
                else:
                    item.enter(Stage.PRODUCE)
                    self._next.submit(item)
                    if self._on_labelled is not None:
                        self._on_labelled()
            ready.popleft()

    def join(self, timeout: float | None) -> None:
        """Wait for the engine's results of everything held, handing them on, then join the
        next step with the time left."""
        join_then_next(self.poll, self.held, self._wakeup, timeout, self._next)

    def close(self) -> None:
        self._buffer = []
        self._ready.clear()
        self._next.close()
