"""The inference engine: documents in, ``LabelsMessage`` results out, on two threads of its own.

    submit() ──▶ inbox ──▶ [tokenizer thread] ──▶ TokenBudgetBatcher ──▶ [inference thread]
                                                                          │ ModelRunner.score
    poll_results() ◀── results ◀── OutputBuilder ◀── window aggregation ◀─┘

The caller (the Kafka loop, or ``classify`` on files) never blocks on the model: ``submit`` only
queues, ``poll_results`` drains what is finished. Tokenizing runs on its own thread so that the
model never waits for the tokenizer while work is queued; the inference thread asks the batcher
for the next batch and sleeps at most until that batch's deadline.

Errors: a document that cannot be tokenized, or that runs out of memory even alone, comes back as a
``WorkResult`` with ``error`` set (→ a dead letter). Anything else that breaks a thread is fatal:
``healthy()`` turns False and ``poll_results``/``submit`` raise :class:`EngineFailed`.

All public methods are thread-safe; ``submit``, ``poll_results``, ``pending`` and ``discard`` are
meant for the caller's thread while the engine's threads run.
"""

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count

import numpy as np

from schemas.labels import LabelsMessage
from schemas.manifest import CheckpointManifest
from worker.aggregation import WindowCollector
from worker.batching import Pending, TokenBudgetBatcher, batch_cost
from worker.checkpoint import load_checkpoint
from worker.engine_config import (
    EngineSettings,
    resolve_device,
    resolve_dtype,
    resolve_torch_threads,
)
from worker.metrics import WorkerMetrics
from worker.model_runner import ModelRunner
from worker.output_builder import OutputBuilder
from worker.tokenize_stage import TokenizedDocument, TokenizeStage
from worker.work_items import EngineFailed, WorkItem, WorkResult

logger = logging.getLogger(__name__)

TOKENIZE_GROUP = 32
"""Most documents tokenized in one tokenizer call (smaller groups reach the batcher sooner)."""


@dataclass(eq=False, slots=True)
class _Job:
    """One submitted document, from ``submit`` until ``poll_results`` hands its result out."""

    key: int
    item: WorkItem
    tokenized: TokenizedDocument | None = None
    collector: WindowCollector | None = None
    cancelled: bool = False  # discarded: nothing more is done or returned for it
    done: bool = False  # a result (success or error) was queued


@dataclass(frozen=True, slots=True)
class _Window:
    job: _Job
    index: int
    ids: list[int]


class InferenceEngine:
    def __init__(
        self,
        runner: ModelRunner,
        settings: EngineSettings,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.manifest: CheckpointManifest = runner.manifest
        self.metrics = metrics
        self.max_length = settings.resolve_max_length(self.manifest.max_length)
        if runner.max_length != self.max_length:
            raise ValueError(
                f"the runner was built for max_length={runner.max_length} but the settings ask "
                f"for {self.max_length}"
            )
        # The tokenizer thread gets its own copy: a Rust tokenizer shared between threads can
        # fail with "Already borrowed" when one thread changes its truncation settings while
        # the other uses it (the runner pads with the original on the inference thread).
        self.tokenize_stage = TokenizeStage(
            copy.deepcopy(runner.tokenizer),
            max_length=self.max_length,
            long_documents=settings.long_documents,
            stride=settings.chunk_stride,
            max_chunks=settings.max_chunks,
            max_chars_per_token=settings.max_chars_per_token,
        )
        self.output_builder = OutputBuilder(self.manifest)
        self._clock = clock
        self._lock = threading.Lock()
        self._inbox_ready = threading.Condition(self._lock)
        self._work_ready = threading.Condition(self._lock)
        self._results_ready = threading.Condition(self._lock)
        self.max_batch_tokens = settings.resolve_batch_tokens(runner.device.type, self.max_length)
        self._batcher: TokenBudgetBatcher[_Window] = TokenBudgetBatcher(
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            clock=clock,
            pad_multiple=runner.pad_multiple,
        )
        self._inbox: deque[_Job] = deque()
        self._jobs: dict[int, _Job] = {}  # submitted and not yet handed out, by key
        self._results: deque[tuple[_Job, WorkResult]] = deque()
        self._keys = count()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopping = False
        self._failure: BaseException | None = None
        if metrics is not None:
            metrics.model_info.info(
                {
                    "name": self.manifest.name,
                    "version": self.manifest.version,
                    "sha256": self.manifest.weights_sha256,
                    "max_length": str(self.max_length),
                    "long_documents": settings.long_documents,
                    "device": str(runner.device),
                    "dtype": str(runner.dtype).removeprefix("torch."),
                }
            )

    @classmethod
    def from_settings(
        cls, settings: EngineSettings, metrics: WorkerMetrics | None = None
    ) -> "InferenceEngine":
        """Load the checkpoint, build the runner, warm it up (unless disabled). Not started."""
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        import torch

        torch.set_num_threads(resolve_torch_threads(settings.torch_threads))
        checkpoint = load_checkpoint(settings.model, device=device, dtype=dtype)
        max_length = settings.resolve_max_length(checkpoint.manifest.max_length)
        runner = ModelRunner(checkpoint, max_length=max_length)
        runner.compile(settings.torch_compile)
        if settings.warmup:
            runner.warmup(settings.resolve_batch_tokens(device.type, max_length),
                          settings.max_batch_size)
        return cls(runner, settings, metrics)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the tokenizer thread and the inference thread."""
        with self._lock:
            if self._started:
                raise RuntimeError("the engine was already started")
            self._started = True
        self._threads = [
            threading.Thread(target=self._guard(self._tokenize_loop), name="eurovoc-tokenize",
                             daemon=True),
            threading.Thread(target=self._guard(self._inference_loop), name="eurovoc-inference",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads; queued and in-flight work is abandoned."""
        with self._lock:
            self._stopping = True
            self._notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("engine thread %s did not stop within %.1fs", thread.name, timeout)

    def healthy(self) -> bool:
        """True while started, not stopped, not failed and both threads alive."""
        with self._lock:
            if not self._started or self._stopping or self._failure is not None:
                return False
        return all(thread.is_alive() for thread in self._threads)

    def __enter__(self) -> "InferenceEngine":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- caller API ----------------------------------------------------------------------

    def submit(self, items: Sequence[WorkItem]) -> None:
        """Queue documents; returns at once. Bad documents come back as error results.

        Raises :class:`EngineFailed` once the engine has failed and ``RuntimeError`` after stop.
        """
        with self._lock:
            self._raise_if_failed()
            if self._stopping:
                raise RuntimeError("the engine is stopped")
            for item in items:
                job = _Job(next(self._keys), item)
                self._jobs[job.key] = job
                self._inbox.append(job)
            if items:
                self._inbox_ready.notify()

    def poll_results(self, timeout: float = 0.0) -> list[WorkResult]:
        """Finished results (any order); waits up to ``timeout`` seconds for at least one."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                self._raise_if_failed()
                if self._results:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._results_ready.wait(remaining)
            out = []
            while self._results:
                job, result = self._results.popleft()
                self._jobs.pop(job.key, None)
                out.append(result)
            return out

    def pending(self) -> int:
        """Documents submitted and not yet returned by ``poll_results`` (nor discarded)."""
        with self._lock:
            return len(self._jobs)

    def has_capacity(self) -> bool:
        """``pending() < settings.max_queued_documents``: the consumer may submit more."""
        return self.pending() < self.settings.max_queued_documents

    def discard(self, predicate: Callable[[WorkItem], bool]) -> int:
        """Forget every held document whose item matches; returns how many were dropped.

        Covers documents queued, being tokenized, batched, being scored and already finished
        but not yet polled: no result for them is ever returned.
        """
        with self._lock:
            dropped = [job for job in self._jobs.values() if predicate(job.item)]
            if not dropped:
                return 0
            for job in dropped:
                job.cancelled = True
                del self._jobs[job.key]
            self._inbox = deque(job for job in self._inbox if not job.cancelled)
            self._batcher.remove(lambda window: window.job.cancelled)
            self._results = deque(pair for pair in self._results if not pair[0].cancelled)
            return len(dropped)

    # -- threads -------------------------------------------------------------------------

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except BaseException as exc:  # noqa: BLE001 - surfaced through EngineFailed
                logger.exception("engine thread %s failed", threading.current_thread().name)
                with self._lock:
                    if self._failure is None:
                        self._failure = exc
                    self._notify_all()

        return run

    def _tokenize_loop(self) -> None:
        while True:
            with self._lock:
                while not self._inbox and not self._stop_requested():
                    self._inbox_ready.wait()
                if self._stop_requested():
                    return
                group = [self._inbox.popleft()
                         for _ in range(min(TOKENIZE_GROUP, len(self._inbox)))]
            started = time.perf_counter()
            tokenized = self.tokenize_stage.tokenize_each([job.item.document for job in group])
            if self.metrics is not None:
                self.metrics.tokenize_seconds.observe(time.perf_counter() - started)
            with self._lock:
                for job, result in zip(group, tokenized, strict=True):
                    if job.cancelled:
                        continue
                    if isinstance(result, Exception):
                        self._finish(job, None, f"tokenization failed: {result!r}")
                    elif not result.windows:
                        self._finish(job, None, "tokenization produced no tokens")
                    else:
                        job.tokenized = result
                        job.collector = WindowCollector(len(result.windows), self.runner.n_labels)
                        for index, ids in enumerate(result.windows):
                            self._batcher.add(_Window(job, index, ids), len(ids))
                self._work_ready.notify()

    def _inference_loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stop_requested():
                        return
                    batch = self._batcher.next_batch()
                    if batch:
                        break
                    self._work_ready.wait(self._batcher.time_until_ready())
            self._run_batch(batch)

    def _run_batch(self, batch: list[Pending[_Window]]) -> None:
        taken_at = self._clock()
        sequences = [entry.payload.ids for entry in batch]
        started = time.perf_counter()
        scored = self.runner.score_batch(sequences)
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            metrics = self.metrics
            padded = batch_cost(batch)
            for entry in batch:
                metrics.queue_seconds.observe(max(0.0, taken_at - entry.added_at))
            metrics.inference_seconds.observe(elapsed)
            metrics.batch_size.observe(len(batch))
            metrics.batch_tokens.observe(padded)
            metrics.padding_efficiency.observe(sum(entry.length for entry in batch) / padded)

        completed: list[tuple[_Job, np.ndarray]] = []
        with self._lock:
            for row, entry in enumerate(batch):
                window = entry.payload
                job = window.job
                if job.cancelled or job.done:
                    continue
                if row in scored.errors:
                    # the document cannot be scored: drop its other windows, report the error
                    self._batcher.remove(lambda other, job=job: other.job is job)
                    self._finish(job, None, scored.errors[row])
                elif job.collector.add(window.index, scored.probabilities[row]):
                    job.done = True  # reserved: the result is built outside the lock
                    completed.append((job, job.collector.result(self.settings.chunk_aggregation)))
        if not completed:
            return
        results = []
        for job, probabilities in completed:
            tokenized = job.tokenized
            try:
                message = self.output_builder.build(
                    job.item.document.id,
                    probabilities,
                    truncated=tokenized.truncated,
                    chunks=tokenized.chunks,
                    tokens=tokenized.tokens,
                    source=job.item.source,
                )
                results.append((job, WorkResult(job.item, message, None)))
            except ValueError as exc:
                results.append((job, WorkResult(job.item, None, f"invalid output: {exc}")))
        with self._lock:
            for job, result in results:
                if not job.cancelled:
                    self._results.append((job, result))
            self._results_ready.notify_all()

    # -- helpers (call with the lock held) -----------------------------------------------

    def _finish(self, job: _Job, message: LabelsMessage | None, error: str | None) -> None:
        job.done = True
        self._results.append((job, WorkResult(job.item, message, error)))
        self._results_ready.notify_all()

    def _stop_requested(self) -> bool:
        return self._stopping or self._failure is not None

    def _notify_all(self) -> None:
        self._inbox_ready.notify_all()
        self._work_ready.notify_all()
        self._results_ready.notify_all()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise EngineFailed(f"inference engine failed: {self._failure!r}") from self._failure
