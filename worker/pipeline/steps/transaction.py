"""Transaction step (``--delivery exactly-once``): outputs, dead letters and offsets, atomically."""

import logging
import time
from collections.abc import Callable, Iterable

from kafka import TopicPartition
from kafka.errors import (
    InvalidProducerEpochError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka.structs import MemberState, OffsetAndMetadata

from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.progress import Event, Progress
from worker.pipeline.steps.commit import commit_now_timeout
from worker.pipeline.steps.produce import (
    REFUSALS,
    DeliveryFailed,
    delivery_failure,
    output_of,
)
from worker.pipeline.work_items import Output, WorkItem
from worker.runtime.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

_FATAL = (ProducerFencedError, InvalidProducerEpochError, TransactionalIdAuthorizationFailedError)

Staged = tuple[int, WorkItem, Output]
"""An output staged for a transaction: (input offset, item, output)."""
_REBALANCE_WAIT_S = 3.0
"""Transactions wait this long for a rebalance to end before they go on during it."""
_RENEW_EVERY_S = 60.0
"""A producer fenced again within this long after a renewal stops the worker."""


class TransactionFenced(RuntimeError):
    """The transactional producer cannot go on (fenced, or in a fatal state): exit 1."""


class TransactionStep:
    """The last step of exactly-once, in the place of both the produce and the commit step.

    ``submit`` stages an item's label message or dead letter (nothing is sent yet) and marks the
    item finished in the in-flight registry, which moves its partition's contiguous watermark;
    its outcome (``eurovoc_documents_produced`` or ``_dead_lettered``) and the acknowledgement
    progress are counted when its transaction commits, so an aborted one is never progress.
    Every ``interval_s`` (``commit_interval_ms``) one Kafka transaction (KIP-98) carries, per
    partition, exactly the staged outputs *below* the watermark and the watermark itself as the
    group's offset (``send_offsets_to_transaction(offsets, consumer.group_metadata())``,
    KIP-447): begin, send, flush, send the offsets, commit. Results finish out of order (the
    batcher groups documents by length), so outputs past a partition's watermark stay staged for
    a later transaction: a transaction never carries an output whose input offset it does not
    commit, and a crash after a commit re-processes nothing that was committed.

    * An error inside a transaction (a send that failed, a flush past ``commit_timeout_s``, a stale
      group generation, the coordinator gone): the transaction is aborted, every partition of it
      is sought back to where its uncommitted records begin and its in-flight work is dropped;
      the records are read and processed again (read_committed readers never see the aborted
      ones).
    * A record the broker refuses for a reason no retry fixes (``produce.REFUSALS``: the
      topic's ACLs, a size limit): processing it again would abort again, forever. The
      transaction is aborted and rewound once, and :class:`~.produce.DeliveryFailed` (naming the
      topic, the input record and the reason) is raised from ``poll``: exit 1; nothing more is
      committed here.
    * Fenced (another producer took this ``transactional_id`` over) or any error the abort cannot
      recover from: :class:`TransactionFenced` is raised from ``poll``; the worker exits 1.
      Unless the id is this process's own (derived from ``worker_id``, no ``group_instance_id``):
      then only the broker can have fenced it, by aborting a transaction that outlived
      ``transaction_timeout_ms`` (a broker outage, a frozen process); ``renew`` builds a new
      producer for the id (once a minute at most) and the transaction's partitions are rewound.
    * kafka-python 3.0.12's ``send_offsets_to_transaction``, ``commit_transaction`` and
      ``abort_transaction`` wait without a timeout: they run on the processor's thread, so a
      transaction that never completes stops the loop's iterations and the watchdog ends the
      worker (exit 1) after ``stall_timeout_s``.
    * On a revoke the rebalancer finishes the revoked partitions' work and calls ``commit_now``
      for them: one transaction up to their watermarks; what is past is dropped, read again by
      the new owner.
    """

    def __init__(
        self,
        producer,
        consumer,
        registry: InFlightRegistry,
        *,
        output_topic: str,
        transactional_id: str,
        interval_s: float,
        timeout_s: float,
        metrics: WorkerMetrics,
        progress: Progress | None = None,
        renew: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._original = producer
        self._renew = renew
        self._renewed_at = float("-inf")
        self._consumer = consumer
        self._registry = registry
        self._topic = output_topic
        self._transactional_id = transactional_id
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._progress = progress
        self._clock = clock
        self._staged: dict[TopicPartition, list[Staged]] = {}
        self._next_commit = clock() + interval_s
        self._fatal: TransactionFenced | DeliveryFailed | None = None
        self._rebalancing_since: float | None = None

    def submit(self, item: WorkItem) -> None:
        source, output = item.source, output_of(item, self._topic)
        if self._registry.acknowledged(item, self._clock(), count=False):
            tp = TopicPartition(source.topic, source.partition)
            self._staged.setdefault(tp, []).append((source.offset, item, output))

    def poll(self) -> None:
        now = self._clock()
        if now < self._next_commit:
            return
        self._next_commit = now + self._interval_s
        group = self._consumer.group_metadata()
        if group.state == MemberState.STABLE:
            self._rebalancing_since = None
        elif self._rebalancing_since is None:
            self._rebalancing_since = now
        # While the group rebalances the broker still takes a transactional offset commit of the
        # current generation, until the next one is formed; one sent as it forms is refused
        # (abort, rewind). So: wait out a short rebalance (members alive: it ends in moments),
        # but commit during a long one (a dead member's session running out), so that the
        # survivors' outputs keep flowing. No generation yet: nothing to commit.
        if group.generation_id >= 0 and (self._rebalancing_since is None
                                         or now - self._rebalancing_since >= _REBALANCE_WAIT_S):
            self._commit(None, self._timeout_s)

    def commit_now(self, partitions: Iterable[TopicPartition] | None = None,
                   timeout_s: float | None = None) -> bool:
        """One transaction up to the watermarks of ``partitions`` (default: all) now, the flush
        within :func:`~worker.pipeline.steps.commit.commit_now_timeout`: on a revoke and on the
        way out. False when it was aborted (or the producer is fenced)."""
        try:
            return self._commit(partitions, commit_now_timeout(self._timeout_s, timeout_s))
        except (TransactionFenced, DeliveryFailed):
            return False  # logged where it was raised; poll() raises it again

    def _commit(self, partitions: Iterable[TopicPartition] | None, timeout_s: float) -> bool:
        if self._fatal is not None:
            raise self._fatal
        offsets = self._registry.committable(partitions)
        if not offsets:
            return True
        batch = self._take(offsets)
        started = self._clock()
        producer, begun, sending = self._producer, False, None
        try:
            producer.begin_transaction()
            begun = True
            futures = []
            for sending in batch:  # send() raises a record above max_request_size at once
                _, _, output = sending
                futures.append(producer.send(output.topic, value=output.value, key=output.key,
                                             headers=output.headers))
            producer.flush(timeout=timeout_s)
            sending = None
            failed = [(entry, future.exception) for entry, future in zip(batch, futures)
                      if future.failed()]
            if failed:  # a refusal first: the records it aborted fail with it or after it
                sending, error = next((entry_error for entry_error in failed
                                       if isinstance(entry_error[1], REFUSALS)), failed[0])
                raise error
            producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()},
                self._consumer.group_metadata())
            producer.commit_transaction()
        except Exception as exc:  # noqa: BLE001 - every error inside a transaction aborts it
            refused = sending if sending is not None and isinstance(exc, REFUSALS) else None
            self._abort(offsets, exc, begun, refused)
            return False
        now = self._clock()
        self._registry.mark_committed(offsets)
        for _, item, _ in batch:  # counted now, not when staged: an abort is no progress
            self._registry.count_outcome(item, now)
        self._metrics.transactions.labels("committed").inc()
        self._metrics.transaction_seconds.observe(now - started)
        if self._progress is not None:
            if batch:
                self._progress.mark(Event.ACK)
            self._progress.mark(Event.COMMIT)
        return True

    def _take(self, offsets: dict[TopicPartition, int]) -> list[Staged]:
        """The staged outputs below the watermarks in ``offsets``, in offset order per partition
        (the rest stay staged); outputs of dropped partitions are forgotten."""
        batch: list[Staged] = []
        for tp in list(self._staged):
            entries = [entry for entry in self._staged[tp] if not entry[1].cancelled]
            watermark = offsets.get(tp)
            if watermark is not None:
                entries.sort(key=lambda entry: entry[0])
                below = [entry for entry in entries if entry[0] < watermark]
                batch.extend(below)
                entries = entries[len(below):]
            if entries:
                self._staged[tp] = entries
            else:
                del self._staged[tp]
        return batch

    def _abort(self, offsets: dict[TopicPartition, int], exc: BaseException,
               begun: bool, refused: Staged | None = None) -> None:
        self._metrics.transactions.labels("aborted").inc()
        if begun and not isinstance(exc, _FATAL):  # (begin_transaction fails in a fatal state)
            try:
                self._producer.abort_transaction()
            except Exception as abort_exc:  # noqa: BLE001 - a fatal state: cannot go on
                exc = abort_exc
            else:
                self._rewind(offsets, exc)
                if refused is not None:
                    self._refused(refused, exc)
                return
        if self._renew is not None and self._clock() - self._renewed_at > _RENEW_EVERY_S:
            self._renew_producer(offsets, exc)
            return
        fenced = isinstance(exc, (ProducerFencedError, InvalidProducerEpochError)) or (
            "Fenced" in str(exc))
        message = (
            f"transactional producer {self._transactional_id!r} fenced: another producer with "
            f"this transactional_id took over (a newer instance of this worker), so this one is "
            f"a zombie; its open transaction is aborted and nothing more is committed here "
            f"({exc!r})" if fenced else
            f"transactional producer {self._transactional_id!r} cannot go on: the broker "
            f"refused its transaction and it is in a fatal state (e.g. another producer with "
            f"this transactional_id fenced it); nothing more is committed here ({exc!r})")
        self._fatal = TransactionFenced(message)
        logger.error("%s", message, extra={"event": "transaction_fenced" if fenced
                                           else "transaction_fatal"})
        raise self._fatal from exc

    def _refused(self, staged: Staged, exc: BaseException) -> None:
        """The broker refused a record of the (now aborted and rewound) transaction for a reason
        no retry fixes: aborting again and again would never get past it, so nothing more is
        committed here and :class:`DeliveryFailed` stops the worker (exit 1)."""
        _, item, output = staged
        self._fatal = DeliveryFailed(delivery_failure(output, item.source, exc))
        logger.error("%s", self._fatal, extra={"event": "delivery_refused", "topic": output.topic})
        raise self._fatal from exc

    def _renew_producer(self, offsets: dict[TopicPartition, int], exc: BaseException) -> None:
        """This process's own transactional id was fenced by the broker, not by another
        instance: a transaction it had open was aborted (``transaction_timeout_ms`` ran out,
        e.g. while the broker was down). A new producer takes over the id; the partitions of
        the lost transaction are read again."""
        logger.warning(
            "transactional producer %r fenced by the broker (%r): a transaction it had open was "
            "aborted (transaction_timeout_ms ran out, e.g. during a broker outage); the id is "
            "this process's own, so a new producer takes it over", self._transactional_id, exc,
            extra={"event": "transaction_producer_renewed"})
        self._renewed_at = self._clock()
        try:
            self._producer.close(timeout=0)
        except Exception:  # noqa: BLE001 - a fenced producer, on the way out
            pass
        try:
            self._producer = self._renew()
        except Exception as renew_exc:  # noqa: BLE001
            self._fatal = TransactionFenced(f"transactional producer {self._transactional_id!r} "
                                            f"could not be renewed: {renew_exc!r}")
            logger.error("%s", self._fatal, extra={"event": "transaction_fatal"})
            raise self._fatal from renew_exc
        self._rewind(offsets, exc)

    def _rewind(self, offsets: dict[TopicPartition, int], exc: BaseException) -> None:
        """After an abort: seek every partition of the transaction back to where its uncommitted
        records begin and drop its in-flight work; the records are read and processed again."""
        registry, consumer = self._registry, self._consumer
        positions = {tp: registry.uncommitted_from(tp) for tp in offsets}
        dropped = registry.drop(offsets)
        assigned = set(consumer.assignment() or ())
        for tp, position in positions.items():
            if position is not None and tp in assigned:
                consumer.seek(tp, position)
        logger.warning(
            "transaction aborted (%r): %s sought back to their last committed offsets; %d "
            "in-flight documents dropped, read and processed again", exc,
            sorted(f"{tp.topic}/{tp.partition}@{position}" for tp, position in positions.items()),
            dropped, extra={"event": "transaction_aborted", "error": repr(exc)})

    def join(self, timeout: float | None) -> None:
        self.commit_now(timeout_s=timeout)

    def close(self) -> None:
        """Close a producer this step renewed (the first belongs to the app, the consumer to
        the processor)."""
        if self._producer is not self._original:
            try:
                self._producer.close(timeout=0.5)
            except Exception:  # noqa: BLE001 - on the way out
                logger.warning("renewed producer close failed", exc_info=True)
