"""Decode step: record bytes → ``InputDocument``; a record that is not one goes to dead letters."""

from worker.pipeline.steps.base import Step
from worker.pipeline.steps.decoding import decode_value
from worker.pipeline.work_items import Rejection, Stage, WorkItem


class DecodeStep:
    def __init__(self, next_step: Step, dead_letters: Step, max_message_bytes: int) -> None:
        self._next = next_step
        self._dead_letters = dead_letters
        self._max_bytes = max_message_bytes

    def submit(self, item: WorkItem) -> None:
        """Decode once (a rejected item keeps its result for the retry) and hand it on."""
        if item.document is None and item.rejection is None:
            decoded = decode_value(item.value, self._max_bytes)
            if decoded.__class__ is Rejection:
                item.rejection = decoded
            else:
                item.document = decoded
        if item.rejection is None:
            item.enter(Stage.TOKENIZE)
            self._next.submit(item)
        else:
            self._dead_letters.submit(item)

    def poll(self) -> None:
        self._next.poll()

    def join(self, timeout: float | None) -> None:
        self._next.join(timeout)

    def close(self) -> None:
        self._next.close()
