"""Decode step: record bytes → ``InputDocument``; a record that is not one goes to dead letters."""

from schemas.codec import InvalidDocument, decode_document
from schemas.dead_letter import ErrorType, replay_count_problem
from schemas.document import InputDocument
from worker.pipeline.steps.base import Step
from worker.pipeline.work_items import Rejection, Stage, WorkItem


def decode_value(value: bytes | None, max_bytes: int) -> InputDocument | Rejection:
    """Decode and validate one record value; never raises for bad input.

    The record's own checks (tombstone, empty, too large) come first; the value is then parsed by
    ``schemas.codec.decode_document``, the one document parser (document files use it too), whose
    error type becomes the dead letter's reason.
    """
    if not value:
        return Rejection(ErrorType.EMPTY, "record value is empty" if value is not None
                         else "record value is null (tombstone)")
    if len(value) > max_bytes:
        return Rejection(ErrorType.TOO_LARGE,
                         f"record value is {len(value)} bytes, the limit is {max_bytes}")
    try:
        return decode_document(value)
    except InvalidDocument as exc:
        return Rejection(exc.error_type, str(exc))


def decode_record(value: bytes | None, headers: list[tuple[str, bytes | None]] | None,
                  max_bytes: int) -> InputDocument | Rejection:
    """Decode one record: its value (``decode_value``), then the one header the worker reads,
    ``replay.count``, which must be absent or a count (``invalid_header`` otherwise: replay could
    not be bounded). Other headers are not read, whatever their keys' or values' bytes (null
    values included); never raises for bad input."""
    decoded = decode_value(value, max_bytes)
    if decoded.__class__ is Rejection:
        return decoded
    problem = replay_count_problem(headers)
    return decoded if problem is None else Rejection(ErrorType.INVALID_HEADER, problem)


class DecodeStep:
    """The first step: decodes each record (its value and ``replay.count``) once (a rejected item
    keeps its result for the retry after ``MessageRejected``) and hands a document to
    ``next_step``, a rejection to ``dead_letters``. It holds nothing of its own, so ``poll``,
    ``join`` and ``close`` go straight to the next step."""

    def __init__(self, next_step: Step, dead_letters: Step, max_message_bytes: int) -> None:
        self._next = next_step
        self._dead_letters = dead_letters
        self._max_bytes = max_message_bytes

    def submit(self, item: WorkItem) -> None:
        if item.document is None and item.rejection is None:
            decoded = decode_record(item.value, item.headers, self._max_bytes)
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
