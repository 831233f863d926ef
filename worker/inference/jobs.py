"""The engine's bookkeeping of documents (:class:`Job`) and windows (:class:`Window`): what a
tokenized document adds to the batcher, and what a scored batch means for its documents. A batch
mixes windows of many documents; once all windows of a document are scored their probabilities
are aggregated and its label message is built."""

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from worker.inference.aggregation import WindowCollector
from worker.inference.batching import Pending, TokenBudgetBatcher, batch_cost
from worker.inference.engine_metrics import EngineMetrics
from worker.inference.output_builder import OutputBuilder
from worker.inference.requests import EngineResult, EngineStage, ScoringRequest
from worker.inference.tokenization import TokenizedDocument


@dataclass(eq=False, slots=True)
class Job:
    """One submitted document, from ``submit`` until ``poll_results`` hands its result out: the
    request plus what the engine works out for it (its windows, their scores so far)."""

    item: ScoringRequest
    tokenized: TokenizedDocument | None = None
    collector: WindowCollector | None = None
    done: bool = False  # a result (success or error) was queued or is being built
    released: bool = False  # no longer counted by pending(): handed out, or dropped cancelled

    @property
    def cancelled(self) -> bool:
        """The request's owner gave up on it: dropped wherever the engine finds it."""
        return self.item.cancelled


@dataclass(frozen=True, slots=True)
class Window:
    """One model input of a job (chunk mode cuts a long document into several): the batcher's
    payload."""

    job: Job
    index: int
    ids: list[int]


def take_group(inbox: deque[Job], limit: int, release: Callable[[Job], None]) -> list[Job]:
    """Up to ``limit`` jobs from the front of ``inbox``; cancelled ones are released instead."""
    group: list[Job] = []
    while inbox and len(group) < limit:
        job = inbox.popleft()
        if job.cancelled:
            release(job)
        else:
            group.append(job)
    return group


def queue_windows(job: Job, tokenized: TokenizedDocument | Exception,
                  batcher: TokenBudgetBatcher[Window], n_labels: int, *,
                  release: Callable[[Job], None], fail: Callable[[Job, str], None]) -> None:
    """A tokenized document's windows into the batcher (call with the engine's lock held)."""
    if job.cancelled:
        release(job)
    elif isinstance(tokenized, Exception):
        fail(job, f"tokenization failed: {tokenized!r}")
    elif not tokenized.windows:
        fail(job, "tokenization produced no tokens")
    else:
        job.tokenized = tokenized
        job.collector = WindowCollector(len(tokenized.windows), n_labels)
        job.item.enter(EngineStage.BATCH_QUEUE)
        for index, ids in enumerate(tokenized.windows):
            batcher.add(Window(job, index, ids), len(ids))


def observe_batch(metrics: EngineMetrics, batch: Sequence[Pending[Window]], taken_at: float,
                  seconds: float, oom_splits: int = 0) -> None:
    padded = batch_cost(batch)
    for entry in batch:
        metrics.queue_seconds.observe(max(0.0, taken_at - entry.added_at))
    metrics.inference_seconds.observe(seconds)
    if oom_splits:
        metrics.oom_splits.inc(oom_splits)
    metrics.batch_size.observe(len(batch))
    metrics.batch_tokens.observe(padded)
    metrics.padding_efficiency.observe(sum(entry.length for entry in batch) / padded)


def apply_scores(
    batch: Sequence[Pending[Window]],
    scored,
    aggregation: str,
    *,
    release: Callable[[Job], None],
    fail: Callable[[Job, str], None],
) -> list[tuple[Job, np.ndarray]]:
    """Hand each row of ``scored`` to its document (call with the engine's lock held).

    Returns the documents whose every window is now scored, with their aggregated
    probabilities (``done`` is set: their result is built outside the lock); a document whose
    window could not be scored fails; cancelled documents are released.
    """
    completed: list[tuple[Job, np.ndarray]] = []
    for row, entry in enumerate(batch):
        window = entry.payload
        job = window.job
        if job.cancelled:
            release(job)
        elif job.done:
            continue
        elif row in scored.errors:
            fail(job, scored.errors[row])
        elif job.collector.add(window.index, scored.probabilities[row]):
            job.done = True
            completed.append((job, job.collector.result(aggregation)))
    return completed


def build_results(builder: OutputBuilder, completed: list[tuple[Job, np.ndarray]]
                  ) -> list[tuple[Job, EngineResult]]:
    results = []
    for job, probabilities in completed:
        tokenized = job.tokenized
        try:
            message = builder.build(
                job.item.document.id, probabilities, truncated=tokenized.truncated,
                chunks=tokenized.chunks, tokens=tokenized.tokens, source=job.item.source,
            )
            results.append((job, EngineResult(job.item, message, None)))
        except ValueError as exc:
            results.append((job, EngineResult(job.item, None, f"invalid output: {exc}")))
    return results
