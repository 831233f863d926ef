"""The inference engine: documents in, ``LabelsMessage`` results out, on two threads of its own
(:class:`InferenceEngine`)."""

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from schemas.manifest import CheckpointManifest
from worker.inference.batching import Pending, TokenBudgetBatcher
from worker.inference.engine_metrics import EngineMetrics
from worker.inference.engine_settings import EngineSettings, dtype_name
from worker.inference.feeding import TOKENIZE_GROUP
from worker.inference.jobs import (
    Job,
    Window,
    apply_scores,
    build_results,
    observe_batch,
    queue_windows,
    take_group,
)
from worker.inference.model_runner import ModelRunner
from worker.inference.output_builder import OutputBuilder
from worker.inference.requests import (
    EngineFailed,
    EngineResult,
    EngineStage,
    ScoringRequest,
)
from worker.inference.runner_setup import build_runner
from worker.inference.tokenization import DocumentTokenizer

logger = logging.getLogger(__name__)


class InferenceEngine:
    """Scores documents on two threads of its own; the caller never blocks on the model.

        submit() ──▶ inbox ──▶ [tokenizer thread] ──▶ TokenBudgetBatcher ──▶ [inference thread]
                                                                            │ ModelRunner.score
        poll_results() ◀── results ◀── OutputBuilder ◀── window aggregation ◀─┘

    ``submit`` only queues, ``poll_results`` drains what is finished (``on_results``, when set,
    is called as soon as there is something); callers feed it through
    ``worker.inference.feeding``. Tokenizing runs on its own thread so that the model never
    waits for the tokenizer; the inference thread sleeps at most until the next batch's
    deadline. The engine keeps no table of documents: it moves each request's stage along
    (``EngineStage``: batch queue, model) and drops a request whose owner set ``cancelled``
    wherever it finds it, without a result.

    Errors: a document that cannot be tokenized, or that runs out of memory even alone, comes
    back as an :class:`EngineResult` with ``error`` set (the pipeline dead-letters it). Anything
    else that breaks a thread is fatal: ``healthy()`` turns False and ``poll_results``/``submit``
    raise :class:`EngineFailed`. ``metrics`` (optional) receives the batch and stage
    measurements. All public methods are thread-safe.
    """

    def __init__(
        self,
        runner: ModelRunner,
        settings: EngineSettings,
        metrics: EngineMetrics | None = None,
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
        self.document_tokenizer = DocumentTokenizer(
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
        self._batcher: TokenBudgetBatcher[Window] = TokenBudgetBatcher(
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            clock=clock,
            pad_multiple=runner.pad_multiple,
        )
        self._inbox: deque[Job] = deque()
        self._results: deque[tuple[Job, EngineResult]] = deque()
        self._pending = 0  # what pending() returns: submitted, neither handed out nor dropped
        self.on_results: Callable[[], None] | None = None
        self._threads: dict[str, threading.Thread] = {}  # by role
        self._started = False
        self._stopping = False
        self._failure: BaseException | None = None
        if metrics is not None:
            metrics.model_info.info({
                "name": self.manifest.name, "version": self.manifest.version,
                "sha256": self.manifest.weights_sha256, "max_length": str(self.max_length),
                "long_documents": settings.long_documents, "device": str(runner.device),
                "dtype": dtype_name(runner.dtype),
            })

    @classmethod
    def from_settings(
        cls, settings: EngineSettings, metrics: EngineMetrics | None = None
    ) -> "InferenceEngine":
        """Load the checkpoint, build the runner, warm it up (unless disabled). Not started."""
        return cls(build_runner(settings), settings, metrics)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the tokenizer thread and the inference thread."""
        with self._lock:
            if self._started:
                raise RuntimeError("the engine was already started")
            self._started = True
        self._threads = {
            role: threading.Thread(target=self._guard(loop), name=f"eurovoc-{role}", daemon=True)
            for role, loop in (("tokenize", self._tokenize_loop),
                               ("inference", self._inference_loop))
        }
        for thread in self._threads.values():
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads; queued and in-flight work is abandoned."""
        with self._lock:
            self._stopping = True
            self._notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("engine thread %s did not stop within %.1fs", thread.name, timeout)

    def healthy(self) -> bool:
        """True while started, not stopped, not failed and both threads alive."""
        with self._lock:
            if not self._started or self._stopping or self._failure is not None:
                return False
        return all(thread.is_alive() for thread in self._threads.values())

    @property
    def threads(self) -> dict[str, threading.Thread]:
        """The engine's threads by role (``tokenize``, ``inference``); empty before ``start``."""
        return dict(self._threads)

    def __enter__(self) -> "InferenceEngine":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- caller API ----------------------------------------------------------------------

    def submit(self, items: Sequence[ScoringRequest]) -> None:
        """Queue documents; returns at once. Bad documents come back as error results.

        Raises :class:`EngineFailed` once the engine has failed and ``RuntimeError`` after stop.
        """
        with self._lock:
            self._raise_if_failed()
            if self._stopping:
                raise RuntimeError("the engine is stopped")
            self._inbox.extend(Job(item) for item in items)
            self._pending += len(items)
            if items:
                self._inbox_ready.notify()

    def poll_results(self, timeout: float = 0.0) -> list[EngineResult]:
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
                self._release(job)
                if not job.cancelled:
                    out.append(result)
            return out

    def pending(self) -> int:
        """Documents submitted and not yet handed out by ``poll_results`` (a cancelled one
        counts until the engine comes across it: at once when queued or finished, after its
        batch when being scored)."""
        with self._lock:
            return self._pending

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
                group = take_group(self._inbox, TOKENIZE_GROUP, self._release)
                if not group:
                    continue
            started = time.perf_counter()
            tokenized = self.document_tokenizer.tokenize_each([job.item.document for job in group])
            if self.metrics is not None:
                self.metrics.tokenize_seconds.observe(time.perf_counter() - started)
            with self._lock:
                for job, result in zip(group, tokenized, strict=True):
                    queue_windows(job, result, self._batcher, self.runner.n_labels,
                                  release=self._release, fail=self._fail_job)
                self._work_ready.notify()

    def _inference_loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stop_requested():
                        return
                    for cancelled in self._batcher.remove(lambda window: window.job.cancelled):
                        self._release(cancelled.payload.job)
                    batch = self._batcher.next_batch()
                    if batch:
                        break
                    self._work_ready.wait(self._batcher.time_until_ready())
            self._run_batch(batch)

    def _run_batch(self, batch: list[Pending[Window]]) -> None:
        taken_at = self._clock()
        for entry in batch:
            entry.payload.job.item.enter(EngineStage.MODEL)
        started = time.perf_counter()
        scored = self.runner.score_batch([entry.payload.ids for entry in batch])
        if self.metrics is not None:
            observe_batch(self.metrics, batch, taken_at, time.perf_counter() - started,
                          scored.oom_splits)
        with self._lock:
            completed = apply_scores(batch, scored, self.settings.chunk_aggregation,
                                     release=self._release, fail=self._fail_job)
        if not completed:
            return
        results = build_results(self.output_builder, completed)
        with self._lock:
            for job, result in results:
                if job.cancelled:
                    self._release(job)
                else:
                    self._results.append((job, result))
            self._results_ready.notify_all()
        self._notify_caller()

    # -- helpers (call with the lock held, but _notify_caller) ----------------------------

    def _fail_job(self, job: Job, error: str) -> None:
        """An error result for ``job`` (it is not scored); its other windows are dropped."""
        job.done = True
        self._batcher.remove(lambda other: other.job is job)
        self._results.append((job, EngineResult(job.item, None, error)))
        self._results_ready.notify_all()
        self._notify_caller()

    def _release(self, job: Job) -> None:
        if not job.released:
            job.released = True
            self._pending -= 1

    def _notify_caller(self) -> None:
        callback = self.on_results
        if callback is not None:
            callback()

    def _stop_requested(self) -> bool:
        return self._stopping or self._failure is not None

    def _notify_all(self) -> None:
        self._inbox_ready.notify_all()
        self._work_ready.notify_all()
        self._results_ready.notify_all()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise EngineFailed(f"inference engine failed: {self._failure!r}") from self._failure
