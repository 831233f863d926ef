"""Feeding documents to the engine under a capacity limit: :class:`EngineFeeder` (the Kafka
worker's classify step holds one) and :func:`feed` (files and in-process batch scoring)."""

from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, Protocol

from worker.inference.requests import EngineResult, R

TOKENIZE_GROUP = 32
"""Most documents handed to the engine in one call and tokenized in one tokenizer call (the
tokenizer encodes a group at once; smaller groups reach the batcher sooner)."""

RESULT_WAIT_S = 0.5
"""Longest :func:`feed` waits for the engine's next results before looking again."""


class Engine(Protocol[R]):
    """What feeding needs of ``worker.inference.engine.InferenceEngine`` (test doubles provide it
    too)."""

    def submit(self, items: Sequence[R]) -> None: ...
    def poll_results(self, timeout: float = 0.0) -> list[EngineResult[R]]: ...
    def pending(self) -> int: ...


class EngineFeeder(Generic[R]):
    """Buffers requests and hands them to ``engine`` in groups of ``TOKENIZE_GROUP`` (the rest
    when results are asked for), within a capacity of ``max_in_flight`` documents.

    The documents it counts are its :meth:`outstanding` ones, buffered here or held by the
    engine (queued, tokenized, batched, being scored, finished but not yet polled), plus the
    results its caller still holds (``results_held``, for a caller that cannot hand results on
    at once). Adding beyond the capacity is the caller's decision: :meth:`has_room` says whether
    there is room.
    """

    def __init__(self, engine: Engine[R], max_in_flight: int) -> None:
        self._engine = engine
        self._capacity = max_in_flight
        self._buffer: list[R] = []

    def outstanding(self) -> int:
        """Requests added and not yet returned by :meth:`results` (a cancelled one counts until
        the engine comes across it)."""
        return len(self._buffer) + self._engine.pending()

    def has_room(self, results_held: int = 0) -> bool:
        """Whether one more request fits next to the outstanding ones and ``results_held``."""
        return self.outstanding() + results_held < self._capacity

    def add(self, request: R) -> None:
        """Buffer ``request``; a full group goes to the engine at once."""
        self._buffer.append(request)
        if len(self._buffer) >= TOKENIZE_GROUP:
            self._flush()

    def results(self, timeout: float = 0.0) -> list[EngineResult[R]]:
        """Hand the buffer to the engine, then its finished results (any order), waiting up to
        ``timeout`` seconds for at least one."""
        self._flush()
        return self._engine.poll_results(timeout)

    def clear(self) -> None:
        """Forget the buffered requests (the engine never sees them)."""
        self._buffer = []

    def _flush(self) -> None:
        if self._buffer:
            self._engine.submit(self._buffer)
            self._buffer = []


def feed(engine: Engine[R], requests: Iterable[R], max_in_flight: int
         ) -> Iterator[EngineResult[R]]:
    """The results of every request (any order), ``requests`` read as room frees up: at most
    ``max_in_flight`` are outstanding at a time. Nothing here cancels a request."""
    feeder = EngineFeeder(engine, max_in_flight)
    for request in requests:
        while not feeder.has_room():
            yield from feeder.results(RESULT_WAIT_S)
        feeder.add(request)
    while feeder.outstanding():
        yield from feeder.results(RESULT_WAIT_S)
