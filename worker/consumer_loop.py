"""The loop thread: poll → decode → submit → collect results → send → advance watermarks → commit.

Only this thread touches the ``KafkaConsumer``. The engine scores on its own threads, the
producer delivers on its IO thread, kafka-python heartbeats on its IO thread; the loop just never
stops calling ``poll()``, so the member stays in its group however slow the model is.

Delivery is at-least-once with no duplicates on graceful paths:

* a record is *in flight* from ``poll()`` until the broker acknowledged its output (or its dead
  letter); offsets are committed per partition only up to the contiguous watermark of finished
  records (``worker.offsets``), every ``commit_interval_ms``, never past an unfinished record;
* at ``max_in_flight`` all assigned partitions are paused (``poll()`` goes on); they are resumed
  at half of it; pauses are re-applied after every assignment;
* a revoked partition (cooperative rebalance) gets ``revoke_timeout_s`` to finish its in-flight
  records, which are then committed before the next ``poll()`` lets the follow-up rebalance hand
  it over; past the deadline its unfinished work is dropped uncommitted (re-read elsewhere);
  lost partitions are dropped without a commit;
* on stop (signal or dead-letter limit) fetching stops, in-flight work gets ``drain_timeout_s``,
  finished offsets are committed, the consumer leaves the group.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import tenacity
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import MemberState, OffsetAndMetadata

from schemas.codec import encode_message
from schemas.dead_letter import ErrorType, replay_count
from schemas.labels import SourceRef
from worker.config import WorkerSettings
from worker.dead_letters import DlqPolicy, build_dead_letter
from worker.decoding import Rejection, decode_value
from worker.work_items import WorkItem, WorkResult
from worker.health import HealthState
from worker.kafka_clients import is_cooperative
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.rebalance import QueueingRebalanceListener, RebalanceEvent, RebalanceKind
from worker.sink import Sink

logger = logging.getLogger(__name__)

_BUSY_POLL_MS = 5
"""poll() timeout while only acknowledgements are awaited: they are handled this often."""
_MODEL_WAIT_S = 0.05
"""While the model works, the loop sleeps on the engine's results (woken by the first one) for
at most this long and fetches without blocking. Spinning on a short poll() instead wakes this
thread and kafka-python's IO thread hundreds of times a second, which on a small CPU machine
steals time from torch's threads (measured: 0.82x instead of ~0.9x of classify alone)."""
_HOUSEKEEPING_S = 0.5


class ExitCode(IntEnum):
    OK = 0
    FATAL = 1  # engine died, a delivery failed for good, an unrecoverable Kafka error
    CONFIG = 2  # invalid settings or command line
    DLQ_LIMIT = 3  # the dead-letter limit tripped


@dataclass(frozen=True)
class Outcome:
    exit_code: ExitCode
    message: str


class FatalError(RuntimeError):
    """The worker cannot go on; committed work stays committed, the rest is re-read."""


class DeliveryRetries:
    """The delivery retry policy, declared with tenacity: bounded attempts, exponential backoff.

    Applied without blocking the loop thread: a record whose delivery failed gets its own
    ``RetryCallState`` and is re-sent by the loop once the delay has passed (``poll()`` goes on
    meanwhile); while it is unacknowledged its partition's watermark, and so its commits, stop.
    """

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self._policy = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10.0),
        )

    def failed(self, state: tenacity.RetryCallState | None, exc: BaseException
               ) -> tuple[tenacity.RetryCallState, float | None]:
        """Record a failed attempt: ``(state, seconds until the next attempt or None: give up)``."""
        if state is None:
            state = tenacity.RetryCallState(self._policy, None, (), {})
        else:
            state.prepare_for_next_attempt()
        state.set_exception((type(exc), exc, exc.__traceback__))
        if self._policy.stop(state):
            return state, None
        return state, self._policy.wait(state)


class _Pending:
    """One consumed record until the broker acknowledged its output or dead letter."""

    __slots__ = ("tp", "offset", "key", "value", "replays", "received_at", "item", "topic",
                 "out_key", "out_value", "headers", "reason", "delivery", "retry_at")

    def __init__(self, tp, offset, key, value, received_at, item=None, replays=0):
        self.tp: TopicPartition = tp
        self.offset: int = offset
        self.key: bytes | None = key
        self.value: bytes | None = value
        self.replays: int = replays  # the record's replay.count header
        self.received_at: float = received_at
        self.item: WorkItem | None = item
        self.topic: str | None = None
        self.out_key: bytes | None = None
        self.out_value: bytes | None = None
        self.headers: list[tuple[str, bytes]] | None = None
        self.reason: str | None = None  # dead-letter reason; None for an output
        self.delivery: tenacity.RetryCallState | None = None  # set once a delivery failed
        self.retry_at = 0.0


class ConsumerLoop:
    def __init__(
        self,
        settings: WorkerSettings,
        consumer,
        sink: Sink,
        engine,
        metrics: WorkerMetrics,
        listener: QueueingRebalanceListener,
        health: HealthState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = s = settings
        self._consumer = consumer
        self._sink = sink
        self._engine = engine
        self._metrics = metrics
        self._listener = listener
        self._health = health or HealthState(s.health_stall_s)
        self._clock = clock
        self._cooperative = is_cooperative(s)
        self._delivery_retries = DeliveryRetries(s.delivery_retries)
        self._tracker = OffsetTracker()
        self._pending: dict[tuple[TopicPartition, int], _Pending] = {}
        self._retry: list[_Pending] = []
        self._assigned: set[TopicPartition] = set()
        self._eager_revoked: set[TopicPartition] = set()
        self._start_offsets: dict[TopicPartition, int] = {}
        self._paused = False
        self._pause_dirty = False
        self._policy = DlqPolicy(
            max_consecutive=s.dlq_max_consecutive,
            max_ratio=s.dlq_max_ratio,
            window=s.dlq_ratio_window,
        )
        self._dlq_tripped: str | None = None
        self._stop_request: Outcome | None = None
        self._draining = False
        self._drain_deadline = 0.0
        now = clock()
        self._next_commit = now + s.commit_interval_ms / 1000
        self._next_lag = now
        self._next_housekeeping = now
        self._commit_metadata = s.worker_id[:200]
        self._resume_at = s.max_in_flight // 2
        self._max_poll_records = s.max_poll_records
        self.generation: int | None = None
        self.rebalances = 0

    # -- control ---------------------------------------------------------------------------

    def request_stop(self, reason: str, exit_code: ExitCode = ExitCode.OK) -> None:
        """Ask for a graceful stop (safe from a signal handler: two attribute stores)."""
        if self._stop_request is None:
            self._stop_request = Outcome(exit_code, reason)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def run(self) -> Outcome:
        """Subscribe, loop until stopped, drain, commit, close the consumer; return the outcome."""
        self._consumer.subscribe([self.settings.input_topic], listener=self._listener)
        outcome: Outcome
        try:
            while True:
                self._iterate()
                if self._draining and (not self._pending or self._clock() >= self._drain_deadline):
                    break
            outcome = self._stop_request or Outcome(ExitCode.OK, "stopped")
        except FatalError as exc:
            logger.error("stopping: %s", exc, extra={"event": "fatal"})
            outcome = Outcome(ExitCode.FATAL, str(exc))
        except KafkaError as exc:
            logger.exception("stopping on a Kafka error", extra={"event": "fatal"})
            outcome = Outcome(ExitCode.FATAL, f"Kafka error: {exc!r}")
        except Exception as exc:  # noqa: BLE001 - anything else also ends the worker
            logger.exception("stopping on an unexpected error", extra={"event": "fatal"})
            outcome = Outcome(ExitCode.FATAL, f"unexpected error: {exc!r}")
        self._shutdown(outcome)
        return outcome

    # -- one iteration ------------------------------------------------------------------------

    def _iterate(self) -> None:
        now = self._clock()
        self._health.tick(now)
        if self._stop_request is not None and not self._draining:
            self._begin_drain(now)
        self._update_pause()
        fetching = not self._paused and not self._draining
        room = self.settings.max_in_flight - len(self._pending)
        if self._engine.pending():
            timeout_ms = 0
        else:
            timeout_ms = _BUSY_POLL_MS if self._pending else self.settings.poll_timeout_ms
        records = self._consumer.poll(
            timeout_ms=timeout_ms,
            max_records=max(1, min(self._max_poll_records, room)) if fetching else 1,
        )
        if self._listener.has_events():
            self._handle_rebalance(self._listener.drain())
        now = self._clock()
        if records and self._dlq_tripped is None:
            # Even if they came while pausing (a partition assigned in this very poll): the fetch
            # position is past them now, so they must be tracked, never dropped.
            self._handle_records(records, now)
        self._collect(now, wait=_MODEL_WAIT_S if self._engine.pending() else 0.0)
        if now >= self._next_commit:
            self._commit()
            self._next_commit = now + self.settings.commit_interval_ms / 1000
        if now >= self._next_housekeeping:
            self._housekeeping(now)

    def _collect(self, now: float, wait: float) -> bool:
        """Take engine results and delivery completions; resend due retries. True if any."""
        results = self._engine.poll_results(wait)
        if results:
            self._handle_results(results)
        completions = self._sink.drain()
        if completions:
            self._handle_completions(completions, self._clock())
        if self._retry:
            self._resend_due(now)
        self._metrics.in_flight.set(len(self._pending))
        return bool(results or completions)

    # -- records in ----------------------------------------------------------------------------

    def _handle_records(self, records: dict, now: float) -> None:
        s = self.settings
        max_bytes = s.max_message_bytes
        pending = self._pending
        policy = self._policy
        items: list[WorkItem] = []
        consumed = 0
        tripped = False
        for tp, batch in records.items():
            if tp not in self._assigned:  # records only come for assigned partitions
                self._assigned.add(tp)
            state = self._tracker.partition(tp)
            if tp not in self._start_offsets and batch:
                self._start_offsets[tp] = batch[0].offset
            topic, partition = tp.topic, tp.partition
            for record in batch:
                offset = record.offset
                decoded = decode_value(record.value, max_bytes)
                if decoded.__class__ is Rejection:
                    reason = decoded.error_type.value
                    cause = policy.check(reason)
                    if cause is not None:
                        self._trip_dlq(cause)
                        tripped = True
                        break
                    policy.record_dead_letter(reason)
                    entry = _Pending(tp, offset, record.key, record.value, now,
                                     replays=replay_count(record.headers))
                    state.track(offset)
                    pending[(tp, offset)] = entry
                    self._send_dead_letter(entry, decoded.error_type, decoded.message)
                else:
                    policy.record_ok()
                    item = WorkItem(
                        decoded,
                        SourceRef.model_construct(topic=topic, partition=partition, offset=offset),
                        now,
                    )
                    entry = _Pending(tp, offset, record.key, record.value, now, item,
                                     replay_count(record.headers))
                    state.track(offset)
                    pending[(tp, offset)] = entry
                    items.append(item)
                consumed += 1
            if tripped:
                break
        if items:
            self._engine.submit(items)
        self._metrics.consumed.inc(consumed)

    # -- results out ---------------------------------------------------------------------------

    def _handle_results(self, results: list[WorkResult]) -> None:
        pending = self._pending
        output_topic = self.settings.output_topic
        send = self._sink.send
        for result in results:
            source = result.item.source
            entry = pending.get((TopicPartition(source.topic, source.partition), source.offset))
            if entry is None or entry.item is not result.item:
                continue  # dropped (revoked or lost partition)
            if result.error is None:
                message = result.message
                entry.topic = output_topic
                entry.out_key = message.id.encode()
                entry.out_value = encode_message(message)
                entry.value = None  # the input bytes are no longer needed
                send(output_topic, entry.out_key, entry.out_value, entry)
            else:
                if self._dlq_tripped is not None:
                    self._abandon(entry)
                    continue
                reason = ErrorType.INFERENCE.value
                cause = self._policy.check(reason)
                if cause is not None:
                    self._trip_dlq(cause)
                    self._abandon(entry)
                    continue
                self._policy.record_dead_letter(reason)
                self._send_dead_letter(entry, ErrorType.INFERENCE, result.error)

    def _send_dead_letter(self, entry: _Pending, error_type: ErrorType, message: str) -> None:
        s = self.settings
        letter = build_dead_letter(
            key=entry.key,
            value=entry.value,
            error_type=error_type,
            message=message,
            topic=entry.tp.topic,
            partition=entry.tp.partition,
            offset=entry.offset,
            worker_id=s.worker_id,
            max_value_bytes=s.dlq_max_value_bytes,
            replay_count=entry.replays,
        )
        entry.topic = s.dlq_topic
        entry.out_key, entry.out_value, entry.headers = letter.key, letter.value, letter.headers
        entry.reason = error_type.value
        entry.value = None
        self._sink.send(s.dlq_topic, entry.out_key, entry.out_value, entry, entry.headers)

    def _abandon(self, entry: _Pending) -> None:
        """Leave a record unfinished (never committed) but out of the in-flight count."""
        self._pending.pop((entry.tp, entry.offset), None)

    def _handle_completions(self, completions: list, now: float) -> None:
        pending = self._pending
        tracker = self._tracker
        produced = 0
        e2e = self._metrics.end_to_end_seconds
        for entry, exc in completions:
            key = (entry.tp, entry.offset)
            if pending.get(key) is not entry:
                continue  # dropped meanwhile
            if exc is None:
                del pending[key]
                tracker.complete(entry.tp, entry.offset)
                if entry.reason is None:
                    produced += 1
                    e2e.observe(now - entry.received_at)
                else:
                    self._metrics.dead_lettered.labels(entry.reason).inc()
                continue
            entry.delivery, delay = self._delivery_retries.failed(entry.delivery, exc)
            attempts = entry.delivery.attempt_number
            if delay is None:
                raise FatalError(
                    f"delivery to topic {entry.topic} failed {attempts} times "
                    f"(source {entry.tp.topic}/{entry.tp.partition}@{entry.offset}): {exc!r}"
                )
            entry.retry_at = now + delay
            self._retry.append(entry)
            logger.warning(
                "delivery to %s failed (%r); retry %d of %d in %.1fs", entry.topic, exc, attempts,
                self._delivery_retries.retries, delay, extra={"event": "delivery_retry"},
            )
        if produced:
            self._metrics.produced.inc(produced)

    def _resend_due(self, now: float) -> None:
        due = [entry for entry in self._retry if entry.retry_at <= now]
        if not due:
            return
        self._retry = [entry for entry in self._retry if entry.retry_at > now]
        for entry in due:
            if self._pending.get((entry.tp, entry.offset)) is entry:
                self._sink.send(entry.topic, entry.out_key, entry.out_value, entry, entry.headers)

    # -- commits -------------------------------------------------------------------------------

    def _commit(self, partitions=None, *, final: bool = False) -> bool:
        keys = self._assigned - self._eager_revoked if partitions is None else partitions
        offsets = self._tracker.committable(keys)
        if not offsets:
            return True
        request = {tp: OffsetAndMetadata(offset, self._commit_metadata, -1)
                   for tp, offset in offsets.items()}
        timeout_s = self.settings.commit_timeout_s
        if self._draining and not final:  # a periodic commit never blocks past the drain deadline
            timeout_s = max(0.1, min(timeout_s, self._drain_deadline - self._clock()))
        timeout_ms = int(timeout_s * 1000)
        try:
            if final:
                # Revoke and shutdown: bounded (exit within drain_timeout_s + 5 s), a few retries.
                timeout_ms = min(timeout_ms, 1000)
                for attempt in tenacity.Retrying(
                    stop=tenacity.stop_after_attempt(3) | tenacity.stop_after_delay(2.0),
                    wait=tenacity.wait_exponential(multiplier=0.2, max=1.0),
                    retry=tenacity.retry_if_exception(
                        lambda exc: isinstance(exc, KafkaError) and exc.retriable),
                    reraise=True,
                ):
                    with attempt:
                        self._consumer.commit(request, timeout_ms=timeout_ms)
            else:
                self._consumer.commit(request, timeout_ms=timeout_ms)
        except KafkaError as exc:
            logger.warning("offset commit failed (%r); the offsets are committed later or "
                           "re-read", exc, extra={"event": "commit_failed"})
            return False
        self._tracker.mark_committed(offsets)
        return True

    # -- rebalances ----------------------------------------------------------------------------

    def _handle_rebalance(self, events: list[RebalanceEvent]) -> None:
        for event in events:
            partitions = set(event.partitions)
            self.rebalances += 1
            logger.info(
                "partitions %s: %s", event.kind.value, sorted(map(tuple, partitions)),
                extra={"event": f"partitions_{event.kind.value}",
                       "partitions": [f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)],
                       "generation": self._generation()},
            )
            if event.kind is RebalanceKind.ASSIGNED:
                if not self._cooperative and self._eager_revoked:
                    moved = self._eager_revoked - partitions
                    if moved:
                        self._drop(moved, "moved to another member (eager rebalance)")
                    self._eager_revoked.clear()
                for tp in partitions - self._assigned:
                    self._tracker.forget(tp)
                    self._start_offsets.pop(tp, None)
                self._assigned |= partitions
                self._pause_dirty = True
                self._health.joined = True
            elif event.kind is RebalanceKind.LOST:
                self._drop(partitions, "lost")
            elif self._cooperative:
                self._revoke(partitions & self._assigned)
            else:
                # Eager: every partition is revoked before the join; the decision waits for the
                # new assignment (kept partitions keep their state and in-flight work).
                self._eager_revoked |= partitions & self._assigned
        self._update_pause()

    def _revoke(self, partitions: set[TopicPartition]) -> None:
        """Finish the in-flight work of revoked partitions, commit it, forget them."""
        if not partitions:
            return
        started = self._clock()
        deadline = started + self.settings.revoke_deadline_s
        if self._draining:  # a stopping worker exits within drain_timeout_s, revoke or not
            deadline = min(deadline, self._drain_deadline)
        finished = self._finish(partitions, deadline)
        committed = self._commit(partitions, final=True)
        left = [entry for entry in self._pending.values() if entry.tp in partitions]
        if left:
            logger.warning(
                "revoke deadline passed: %d in-flight documents of %s dropped uncommitted",
                len(left), sorted(map(tuple, partitions)), extra={"event": "revoke_timeout"},
            )
        self._drop(partitions, "revoked", log=False)
        logger.info(
            "revoked partitions finished in %.2fs (finished=%s, committed=%s)",
            self._clock() - started, finished, committed, extra={"event": "revoke_done"},
        )

    def _finish(self, partitions: set[TopicPartition], deadline: float) -> bool:
        """Run results and acknowledgements (no poll()) until none of ``partitions`` is in flight."""
        while True:
            if not any(entry.tp in partitions for entry in self._pending.values()):
                return True
            now = self._clock()
            if now >= deadline:
                return False
            self._health.tick(now)
            wait = min(0.01, deadline - now) if self._engine.pending() else 0.0
            if not self._collect(now, wait) and not self._engine.pending():
                self._sink.wait(min(0.01, max(0.0, deadline - now)))

    def _drop(self, partitions: set[TopicPartition], why: str, *, log: bool = True) -> None:
        """Forget partitions: their unfinished work is discarded and never committed here."""
        if not partitions:
            return
        discarded = self._engine.discard(
            lambda item: item.source is not None
            and TopicPartition(item.source.topic, item.source.partition) in partitions
        )
        dropped = [key for key in self._pending if key[0] in partitions]
        for key in dropped:
            del self._pending[key]
        self._retry = [entry for entry in self._retry if entry.tp not in partitions]
        for tp in partitions:
            self._tracker.forget(tp)
            self._start_offsets.pop(tp, None)
            try:
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass
        self._assigned -= partitions
        self._eager_revoked -= partitions
        self._metrics.in_flight.set(len(self._pending))
        if log and (dropped or discarded):
            logger.warning(
                "partitions %s %s: %d in-flight documents dropped uncommitted",
                sorted(map(tuple, partitions)), why, len(dropped), extra={"event": "dropped"},
            )

    def _generation(self) -> int | None:
        try:
            metadata = self._consumer.group_metadata()
        except Exception:  # noqa: BLE001 - informational only
            return None
        self.generation = metadata.generation_id
        return metadata.generation_id

    # -- backpressure ----------------------------------------------------------------------------

    def _update_pause(self) -> None:
        in_flight = len(self._pending)
        if self._draining:
            want = True
        elif self._paused:
            want = in_flight > self._resume_at
        else:
            want = in_flight >= self.settings.max_in_flight
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
        if not self._health.joined:
            try:
                self._health.joined = self._consumer.group_metadata().state == MemberState.STABLE
            except Exception:  # noqa: BLE001
                pass
        if now >= self._next_lag:
            self._next_lag = now + self.settings.lag_interval_s
            self.update_lag(lookup_positions=not self._draining)

    def update_lag(self, lookup_positions: bool = True) -> None:
        """consumer_lag{topic,partition} = end offset - committed offset, per assigned partition.

        ``lookup_positions=False``: no broker round trip (on the way out, where time is bounded).
        """
        gauge = self._metrics.consumer_lag
        for tp in self._assigned:
            try:
                end = self._consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - e.g. revoked meanwhile
                continue
            if end is None:
                continue
            committed = self._tracker.committed(tp)
            if committed is None:
                committed = self._start_offsets.get(tp)
            if committed is None and lookup_positions:
                try:
                    committed = self._consumer.position(tp, timeout_ms=1000)
                except Exception:  # noqa: BLE001
                    committed = None
            if committed is None:
                continue
            gauge.labels(tp.topic, str(tp.partition)).set(max(0, end - committed))

    # -- stopping ------------------------------------------------------------------------------

    def _trip_dlq(self, cause: str) -> None:
        if self._dlq_tripped is None:
            self._dlq_tripped = cause
            logger.error("%s: stopping after the work before it", cause,
                         extra={"event": "dlq_limit"})
            self.request_stop(cause, ExitCode.DLQ_LIMIT)

    def _begin_drain(self, now: float) -> None:
        self._draining = True
        self._drain_deadline = now + self.settings.drain_timeout_s
        logger.info(
            "stopping (%s): draining %d in-flight documents for up to %.1fs",
            self._stop_request.message, len(self._pending), self.settings.drain_timeout_s,
            extra={"event": "drain_start"},
        )
        self._update_pause()

    def _shutdown(self, outcome: Outcome) -> None:
        if self._pending:
            logger.warning(
                "%d in-flight documents not finished: left uncommitted (re-read later)",
                len(self._pending), extra={"event": "drain_incomplete"},
            )
            try:
                self._engine.discard(lambda item: True)
            except Exception:  # noqa: BLE001 - a dead engine has nothing to discard
                pass
        try:
            committed = self._commit(final=True)
        except Exception:  # noqa: BLE001
            logger.exception("final commit failed")
            committed = False
        self.update_lag(lookup_positions=False)
        try:
            self._consumer.close(autocommit=False, timeout_ms=1000)
        except Exception:  # noqa: BLE001
            logger.warning("consumer close failed", exc_info=True)
        logger.info(
            "consumer closed (final commit %s)", "ok" if committed else "failed",
            extra={"event": "consumer_closed", "exit_code": int(outcome.exit_code)},
        )
