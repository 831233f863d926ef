"""Classify step: decoded documents into the inference engine, labelled ones out
(:class:`ClassifyStep`)."""

import threading
from collections import deque
from collections.abc import Callable

from schemas.dead_letter import ErrorType
from worker.inference.feeding import Engine, EngineFeeder
from worker.pipeline.progress import Event, Progress
from worker.pipeline.steps.base import MessageRejected, Step, join_then_next
from worker.pipeline.work_items import Rejection, Stage, WorkItem


class ClassifyStep:
    """Feeds decoded documents to the engine (through an ``EngineFeeder``) and hands its
    results on: a labelled document to ``next_step`` (produce), one the engine could not score
    to ``failed`` (dead letters); cancelled ones are dropped. Results come back in any order.

    Its capacity is the worker's capacity knob in documents, ``max_in_flight`` (the processor
    keeps the other, ``max_in_flight_bytes``): the documents it holds
    (:meth:`outstanding`: buffered for the engine, queued, tokenized, batched, being scored,
    finished but not yet taken by the next step). At that bound ``submit`` raises
    ``MessageRejected`` and the processor pauses fetching.

    ``on_labelled`` is told each labelled item once it was handed on (the dead-letter limit
    judges outcomes: ``DeadLetterStep.labelled``); ``poll`` polls ``failed`` too, which sends the
    dead letters judged meanwhile.
    """

    def __init__(
        self,
        engine: Engine[WorkItem],
        next_step: Step,
        failed: Step,
        *,
        max_in_flight: int,
        wakeup: threading.Event,
        progress: Progress | None = None,
        on_labelled: Callable[[WorkItem], None] | None = None,
    ) -> None:
        self._feeder = EngineFeeder(engine, max_in_flight)
        self._next = next_step
        self._failed = failed
        self._wakeup = wakeup
        self._progress = progress
        self._on_labelled = on_labelled
        self._ready: deque[WorkItem] = deque()  # classified, not yet taken by the next step

    def outstanding(self) -> int:
        """Documents accepted and not yet handed on (or dropped cancelled)."""
        return self._feeder.outstanding() + len(self._ready)

    def submit(self, item: WorkItem) -> None:
        if not self._feeder.has_room(results_held=len(self._ready)):
            raise MessageRejected
        self._feeder.add(item)

    def poll(self) -> None:
        results = self._feeder.results()
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
        self._failed.poll()
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
                        self._on_labelled(item)
            ready.popleft()

    def join(self, timeout: float | None) -> None:
        """Wait for the engine's results of everything held, handing them on, then join the
        next step with the time left."""
        join_then_next(self.poll, self.outstanding, self._wakeup, timeout, self._next)

    def close(self) -> None:
        self._feeder.clear()
        self._ready.clear()
        self._next.close()
