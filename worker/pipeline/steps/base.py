"""The processing-step interface (after getsentry/arroyo's ``ProcessingStrategy``)."""

import threading
import time
from collections.abc import Callable
from typing import Protocol

from worker.pipeline.work_items import WorkItem

_JOIN_WAIT_S = 0.1


class MessageRejected(Exception):
    """The step is full: submit the same item again later (after ``poll``)."""


class Step(Protocol):
    """One link of the chain (``worker.pipeline.steps`` shows it), composed in ``worker.app``.

    Each step gets :class:`~worker.pipeline.work_items.WorkItem` objects through ``submit`` and
    hands them on to the next step. ``submit`` never blocks: a step that is full raises
    :class:`MessageRejected` ("try the same item again later"); the processor then keeps the item
    in its backlog and pauses its partitions, which is the worker's backpressure. ``poll`` moves
    finished work on (results of the model, acknowledgements of the broker) and is called on
    every iteration of the processor's loop; errors of asynchronous work surface there. ``join``
    waits, up to a timeout, until everything submitted has been passed on (the drain on
    shutdown); ``close`` releases what the step holds.
    """

    def submit(self, item: WorkItem) -> None:
        """Take one item (or raise ``MessageRejected``); returns at once."""

    def poll(self) -> None:
        """Hand finished work on to the next step; raise what asynchronous work raised."""

    def join(self, timeout: float | None) -> None:
        """Wait until everything submitted was handed on, or ``timeout`` seconds passed."""

    def close(self) -> None:
        """Accept nothing more; release resources (what is unfinished stays unfinished)."""


def join_then_next(poll: Callable[[], None], busy: Callable[[], bool], wakeup: threading.Event,
                   timeout: float | None, next_step: Step) -> None:
    """A step's ``join``: ``poll`` until it is no longer ``busy`` (sleeping on ``wakeup``, which
    its asynchronous work sets) or ``timeout`` seconds passed, then join ``next_step`` with the
    time left."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wakeup.clear()
        poll()
        left = None if deadline is None else deadline - time.monotonic()
        if not busy() or (left is not None and left <= 0):
            break
        wakeup.wait(_JOIN_WAIT_S if left is None else min(left, _JOIN_WAIT_S))
    next_step.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
