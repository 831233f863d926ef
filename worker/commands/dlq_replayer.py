"""``eurovoc-worker replay-dlq``: republish dead letters to the input topic.

* The end offsets of the dead-letter topic are taken once at the start; the replay stops there,
  so the dead letters its own replays produce are not replayed in the same run.
* Each replayed record keeps its key and value and carries ``replay.count`` = the dead letter's
  count + 1; the worker copies that header into any new dead letter of the record, and dead
  letters already replayed ``max_replays`` times are skipped.
* Dead letters whose value was cut to fit the dead-letter topic (``error.truncated_from``) are
  never replayed (the original is gone): they are skipped and counted, like those outside the
  filters or of another source topic.
* Progress is committed to the replay's own consumer group after every batch, once the broker has
  acknowledged the batch's records (idempotent producer, acks=all): an interrupted replay resumes
  where it stopped. A crash between the acknowledgement and the commit republishes at most that
  batch (at-least-once, like the worker).
* It reads committed records only (``read_committed``): the dead letters of an exactly-once
  worker's aborted transactions are never replayed. Its producer sends the largest dead letter
  a worker with the same ``max_request_size`` and ``dlq_max_value_bytes`` writes.
* ``dry_run`` prints one JSON line per dead letter with what would happen, and sends and commits
  nothing.
"""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from schemas.dead_letter import REPLAY_COUNT_HEADER, DeadLetterHeaders
from worker.kafka.clients import security_config
from worker.runtime.periodic import call_within
from worker.runtime.signals import StopSignals
from worker.settings.replay import ReplaySettings, Skip

logger = logging.getLogger(__name__)

CLIENT_ID = "eurovoc-replay-dlq"
_POLL_MS = 500
_CLOSE_S = 10.0  # per client, on the way out
_IDLE_GIVE_UP_S = 30.0  # positions below the snapshot but nothing comes: stop, do not spin


class ReplayError(RuntimeError):
    """The replay cannot go on (a missing topic, a failed delivery)."""


@dataclass
class ReplayReport:
    """What one replay run read, replayed and skipped (and why), printed as JSON at the end."""

    group_id: str
    dry_run: bool
    read: int = 0
    replayed: int = 0
    skipped: Counter = field(default_factory=Counter)
    replayed_by_error_type: Counter = field(default_factory=Counter)
    complete: bool = False

    def as_dict(self) -> dict:
        return {"group_id": self.group_id, "dry_run": self.dry_run, "read": self.read,
                "replayed": self.replayed, "skipped": dict(self.skipped),
                "replayed_by_error_type": dict(self.replayed_by_error_type),
                "complete": self.complete}


def replay(settings: ReplaySettings, out: TextIO,
           stop: StopSignals | None = None) -> ReplayReport:
    """Replay the dead letters ``settings`` select; return what was done. Once ``stop`` got a
    signal: finish the batch, commit it, stop."""
    report = ReplayReport(settings.group_id, settings.dry_run)
    connection = security_config(settings, CLIENT_ID)
    consumer = KafkaConsumer(
        **connection, group_id=report.group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", allow_auto_create_topics=False, max_poll_records=500,
        # An exactly-once worker's aborted transactions leave their dead letters in the log:
        # replayed, they would be duplicates of the committed ones. The end offsets are the
        # last stable offsets then: a transaction still open is left to the next run.
        isolation_level="read_committed",
    )
    producer = None
    try:
        partitions = consumer.partitions_for_topic(settings.dlq_topic)
        if not partitions:
            raise ReplayError(f"dead-letter topic {settings.dlq_topic!r} does not exist")
        assigned = [TopicPartition(settings.dlq_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        end = consumer.end_offsets(assigned)
        if not settings.dry_run:
            producer = KafkaProducer(**connection, acks="all", enable_idempotence=True,
                                     linger_ms=5, allow_auto_create_topics=False,
                                     max_request_size=settings.producer_max_request_size)
        _run(settings, consumer, producer, end, report, out, stop or StopSignals())
    finally:  # bounded: kafka-python's close() joins its IO thread without a time-out
        if producer is not None:
            call_within("replay producer close", lambda: producer.close(timeout=5), _CLOSE_S)
        call_within("replay consumer close", lambda: consumer.close(autocommit=False), _CLOSE_S)
    return report


def _run(settings, consumer, producer, end, report, out, stop) -> None:
    remaining = {tp for tp in end if consumer.position(tp) < end[tp]}
    idle_since = time.monotonic()
    while remaining and stop.signum is None:
        batch = consumer.poll(timeout_ms=_POLL_MS)
        futures, done = [], {}
        for tp, records in batch.items():
            for record in records:
                if record.offset >= end[tp] or _limit_reached(settings, report):
                    break
                report.read += 1
                future = _handle(settings, record, producer, report, out)
                if future is not None:
                    futures.append(future)
                done[tp] = record.offset + 1
        if done:
            idle_since = time.monotonic()
            _acknowledge_and_commit(consumer, producer, futures, done)
        if _limit_reached(settings, report):
            break
        remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        if remaining and time.monotonic() - idle_since > _IDLE_GIVE_UP_S:
            logger.warning("no dead letters for %.0f s below the end offsets of %s; stopping",
                           _IDLE_GIVE_UP_S, sorted(str(tp.partition) for tp in remaining))
            break
    report.complete = not remaining and stop.signum is None


def _limit_reached(settings: ReplaySettings, report: ReplayReport) -> bool:
    return settings.limit is not None and report.replayed >= settings.limit


def _handle(settings, record, producer, report, out):
    """Decide on one dead letter; send it (returning the send's future) unless it is skipped."""
    try:
        headers = DeadLetterHeaders.from_kafka_headers(record.headers or [])
        reason = settings.skip_reason(headers)
    except (ValidationError, UnicodeDecodeError):
        headers, reason = None, Skip.UNREADABLE
    if reason is not None:
        report.skipped[reason.value] += 1
    else:
        report.replayed += 1
        report.replayed_by_error_type[headers.error_type.value] += 1
    if settings.dry_run:
        out.write(orjson.dumps(_describe(record, headers, reason)).decode() + "\n")
        return None
    if reason is not None:
        return None
    replayed = str(headers.replay_count + 1).encode()
    try:
        return producer.send(settings.input_topic, key=record.key, value=record.value,
                             headers=[(REPLAY_COUNT_HEADER, replayed)])
    except MessageSizeTooLargeError as exc:
        raise ReplayError(
            f"the dead letter at {record.topic}/{record.partition}@{record.offset} is larger than "
            f"the replay can send ({settings.producer_max_request_size} bytes, from "
            "max_request_size and dlq_max_value_bytes: set them as the workers that wrote it "
            "had them); this batch was not committed and is sent again by the next run"
        ) from exc


def _describe(record, headers: DeadLetterHeaders | None, reason: Skip | None) -> dict:
    line = {"dlq_partition": record.partition, "dlq_offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "action": "replay" if reason is None else f"skip: {reason.value}"}
    if headers is not None:
        line.update(error_type=headers.error_type.value,
                    source=f"{headers.source_topic}/{headers.source_partition}@{headers.source_offset}",
                    failed_at=headers.failed_at.isoformat(), replay_count=headers.replay_count)
    return line


def _acknowledge_and_commit(consumer, producer, futures, done) -> None:
    if producer is None:  # dry run: nothing sent, nothing committed
        return
    producer.flush(timeout=60)
    for future in futures:
        try:
            future.get(timeout=10)
        except Exception as exc:  # noqa: BLE001 - kafka errors and timeouts alike
            raise ReplayError(f"republishing failed ({exc!r}); this batch was not committed and "
                              "is sent again by the next run") from exc
    consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done.items()})
