"""The stream processor: the only owner of the ``KafkaConsumer``; it drives the chain of steps."""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from schemas.labels import SourceRef
from worker.exit_codes import ExitCode
from worker.inference.requests import EngineFailed
from worker.kafka.clients import is_cooperative
from worker.pipeline.in_flight import InFlightRegistry, record_bytes
from worker.pipeline.progress import Event, Progress
from worker.pipeline.rebalance import QueueingRebalanceListener, Rebalancer
from worker.pipeline.steps.base import MessageRejected, Step
from worker.pipeline.steps.commit import CommitsNow
from worker.pipeline.steps.dead_letter import DeadLetterStep
from worker.pipeline.steps.produce import DeliveryFailed
from worker.pipeline.steps.transaction import TransactionFenced
from worker.pipeline.work_items import WorkItem
from worker.runtime.http_endpoints import HealthState
from worker.runtime.metrics import WorkerMetrics
from worker.settings.worker_settings import WorkerSettings

logger = logging.getLogger(__name__)

_HOUSEKEEPING_S = 0.5
_FINAL_COMMIT_S = 2.0
"""The commit after a drain or a fatal error may take this long even past the drain deadline
(within the 5 s the shutdown promise leaves)."""


@dataclass(frozen=True)
class Outcome:
    """How the processor stopped: the process exit code and why."""

    exit_code: ExitCode
    message: str


@dataclass(frozen=True)
class Chain:
    """The steps the processor talks to: where records go, and the two it asks directly."""

    first: Step
    commit: CommitsNow
    dead_letters: DeadLetterStep


class StreamProcessor:
    """Owns the ``KafkaConsumer`` and drives the chain of steps, one loop iteration at a time.

    One iteration (:meth:`run_once`):

    1. ``poll(timeout_ms=0)``: one pass that never blocks (``worker.kafka.workarounds``);
       heartbeats run on kafka-python's IO thread, so a slow model never costs the membership;
    2. rebalance events queued by the listener are handled first, by the :class:`Rebalancer`
       (a revoked partition is finished and committed before the next ``poll()``);
    3. new records enter the in-flight registry and the *backlog*, the records fetched and not yet
       taken by the first step; the backlog is submitted in order, and when a step is full
       (``MessageRejected``) the rest stays in it and every partition is paused (``poll()`` goes
       on) until the backlog is empty; every partition is paused too while the records read and
       not yet acknowledged weigh ``max_in_flight_bytes`` or more (the byte budget:
       ``InFlightRegistry.bytes``), and a poll asks for no more records than the budget has
       room for at the size of the largest of the last poll;
    4. the chain is polled (results, acknowledgements, periodic commits);
    5. every half second: readiness, the oldest-in-flight gauge, and consumer lag;
    6. with nothing fetched, the loop sleeps on the wakeup event (set by engine results and
       broker acknowledgements) for at most ``poll_timeout_ms``.

    Stopping (signal, dead-letter limit, watchdog): fetching stops, the backlog is abandoned, the
    chain is joined for up to ``drain_timeout_s`` (the last commit included), the consumer leaves
    the group. A fatal error (a delivery failed for good, the engine died, Kafka refused) commits
    what was acknowledged and exits 1. Uncommitted work is read again by the next owner.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        consumer,
        chain: Chain,
        registry: InFlightRegistry,
        *,
        metrics: WorkerMetrics,
        health: HealthState,
        progress: Progress,
        wakeup: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._chain = chain
        self._registry = registry
        self._metrics = metrics
        self._health = health
        self._progress = progress
        self._wakeup = wakeup
        self._listener = QueueingRebalanceListener()
        self._clock = clock
        self._backlog: deque[WorkItem] = deque()
        self._rebalancer = Rebalancer(
            consumer, registry, chain.commit, cooperative=is_cooperative(settings),
            revoke_deadline_s=settings.consumer.revoke_deadline_s, poll_chain=self._poll_chain,
            drain_deadline=lambda: self.drain_deadline, backlog=self._backlog, wakeup=wakeup,
            health=health, metrics=metrics, clock=clock,
        )
        self._paused = False
        self._pause_dirty = False
        self._stop: Outcome | None = None
        self._stop_at = 0.0
        self._next_housekeeping = 0.0
        self._next_lag = 0.0
        self.lag = 0
        self._lag_unknown = 0
        # bytes, of the largest record of the last poll; before the first one the largest
        # record the worker accepts
        self._largest_record = settings.consumer.max_message_bytes

    # -- control -----------------------------------------------------------------------------

    def request_stop(self, reason: str, exit_code: ExitCode = ExitCode.OK) -> None:
        """Ask for a graceful stop; safe from a signal handler or another thread."""
        if self._stop is None:
            self._stop_at = self._clock()
            self._stop = Outcome(exit_code, reason)

    @property
    def registry(self) -> InFlightRegistry:
        return self._registry

    @property
    def drain_deadline(self) -> float | None:
        """When a requested stop must be finished (None: no stop requested)."""
        if self._stop is None:
            return None
        return self._stop_at + self._settings.operations.drain_timeout_s

    def subscribe(self) -> None:
        self._consumer.subscribe([self._settings.kafka.input_topic], listener=self._listener)

    def run(self) -> Outcome:
        """Subscribe, process until stopped, drain, commit, leave the group."""
        self.subscribe()
        try:
            while self._stop is None:
                self.run_once()
            outcome = self._stop
            if outcome.exit_code == ExitCode.FATAL:  # stalled, a topic gone: nothing to wait for
                self._health.stopping = True
                self._commit_acknowledged()
            else:
                self._drain()
        except Exception as exc:  # noqa: BLE001 - whatever it is, the worker ends here
            outcome = Outcome(ExitCode.FATAL, f"{type(exc).__name__}: {exc}")
            expected = isinstance(exc, (DeliveryFailed, EngineFailed, TransactionFenced))
            logger.error("stopping: %s", outcome.message, exc_info=None if expected else exc,
                         extra={"event": "fatal"})
            self._health.stopping = True
            self._commit_acknowledged()
        self._close(outcome)
        return outcome

    # -- one iteration ------------------------------------------------------------------------

    def run_once(self) -> None:
        now = self._clock()
        self._health.tick(now)
        self._wakeup.clear()
        records = self._consumer.poll(timeout_ms=0, max_records=self._poll_size())
        if self._listener.has_events() and self._rebalancer.handle(self._listener.drain()):
            self._pause_dirty = True
            self._progress.mark(Event.ASSIGNMENT)
        if records:
            self._take(records, self._clock())
        self._submit_backlog()
        self._poll_chain()
        self._update_pause()
        self._metrics.in_flight.set(self._registry.count())
        now = self._clock()
        if now >= self._next_housekeeping:
            self._housekeeping(now)
        if not records or self._paused:
            self._wakeup.wait(self._settings.consumer.poll_timeout_ms / 1000)

    def _poll_size(self) -> int:
        """``max_records`` of the next poll: ``max_poll_records``, or fewer where the byte budget
        has room for fewer records the size of the largest of the last poll (before the first:
        of ``max_message_bytes``), so that one poll does not overshoot the budget."""
        consumer = self._settings.consumer
        room = consumer.max_in_flight_bytes - self._registry.bytes()
        return max(1, min(consumer.max_poll_records, room // self._largest_record))

    def _take(self, records: dict, now: float) -> None:
        registry, backlog = self._registry, self._backlog
        consumed = largest = 0
        for tp, batch in records.items():
            topic, partition = tp
            for record in batch:
                source = SourceRef.model_construct(topic=topic, partition=partition,
                                                   offset=record.offset)
                item = WorkItem(source, now, record.key, record.value, headers=record.headers)
                registry.add(tp, item)
                backlog.append(item)
                largest = max(largest, record_bytes(item))
            consumed += len(batch)
        self._largest_record = max(1, largest)
        self._metrics.consumed.inc(consumed)
        self._progress.mark(Event.FETCH)

    def _submit_backlog(self) -> None:
        backlog, first = self._backlog, self._chain.first
        while backlog and self._chain.dead_letters.limit_reached is None:
            item = backlog[0]
            if not item.cancelled:
                try:
                    first.submit(item)
                except MessageRejected:
                    return
            backlog.popleft()

    def _poll_chain(self) -> None:
        self._chain.first.poll()
        cause = self._chain.dead_letters.limit_reached
        if cause is not None and self._stop is None:
            logger.error("%s: stopping after the work before it", cause,
                         extra={"event": "dlq_limit"})
            self.request_stop(cause, ExitCode.DLQ_LIMIT)

    def _update_pause(self) -> None:
        want = (bool(self._backlog) or self._stop is not None
                or self._registry.bytes() >= self._settings.consumer.max_in_flight_bytes)
        if want == self._paused and not self._pause_dirty:
            return
        assignment = set(self._consumer.assignment() or ())
        if want:
            self._consumer.pause(*assignment)
        else:
            paused = set(self._consumer.paused() or ()) & assignment
            if paused:
                self._consumer.resume(*paused)
        self._paused = want
        self._pause_dirty = False
        self._metrics.set_paused(len(assignment) if want else 0)

    # -- periodic ------------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self._next_housekeeping = now + _HOUSEKEEPING_S
        self._rebalancer.update_membership()
        oldest = self._registry.oldest()
        self._metrics.oldest_in_flight.set(0 if oldest is None else now - oldest.received_at)
        if now >= self._next_lag:
            self._next_lag = now + self._settings.operations.lag_interval_s
            self.update_lag()

    def update_lag(self, lookup_positions: bool = True) -> None:
        """consumer_lag{topic,partition} = end offset - committed offset, per assigned partition:
        from the registry's ``uncommitted_from``, else (nothing read yet) the consumer's position
        (``lookup_positions=False``: no broker round trip, on the way out)."""
        gauge, total, unknown = self._metrics.consumer_lag, 0, 0
        for tp in list(self._rebalancer.assigned):
            end = self._consumer.highwater(tp)
            start = self._registry.uncommitted_from(tp)
            if start is None and end is not None and lookup_positions:
                start = self._consumer.position(tp, timeout_ms=200)
            if end is None or start is None:
                unknown += 1  # no fetch response yet: a consumer that never fetches stalls
                continue
            lag = max(0, end - start)
            gauge.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
        self.lag, self._lag_unknown = total, unknown

    def has_work(self) -> bool:
        """Documents in flight or in the backlog, lag, or partitions never fetched from (read by
        the watchdog's thread)."""
        return bool(self._registry.count() or self._backlog or self.lag or self._lag_unknown)

    # -- stopping ------------------------------------------------------------------------------

    def _drain(self) -> None:
        self._health.stopping = True
        self._update_pause()
        for item in self._backlog:
            self._registry.abandon(item)
        self._backlog.clear()
        left = max(0.0, self.drain_deadline - self._clock())
        logger.info("stopping (%s): draining %d in-flight documents for up to %.1fs",
                    self._stop.message, self._registry.count(), left,
                    extra={"event": "drain_start"})
        self._chain.first.join(left)
        self._commit_acknowledged()

    def _commit_acknowledged(self) -> None:
        """The last commit: what was acknowledged, within a short, fixed time."""
        try:
            self._chain.commit.commit_now(timeout_s=_FINAL_COMMIT_S)
        except Exception:  # noqa: BLE001 - on the way out either way
            logger.warning("final commit failed", exc_info=True)

    def _close(self, outcome: Outcome) -> None:
        self._chain.first.close()
        unfinished = self._registry.count()
        if unfinished:
            logger.warning("%d in-flight documents not finished: left uncommitted (re-read "
                           "later)", unfinished, extra={"event": "drain_incomplete"})
        self.update_lag(lookup_positions=False)
        self._registry.drop(self._registry.partitions())
        try:
            self._consumer.close(autocommit=False, timeout_ms=1000)
        except Exception:  # noqa: BLE001
            logger.warning("consumer close failed", exc_info=True)
        logger.info("consumer closed", extra={"event": "consumer_closed",
                                              "exit_code": int(outcome.exit_code)})
