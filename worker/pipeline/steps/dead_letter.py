"""Dead-letter step: a record that cannot be labelled becomes a dead letter for the produce step."""

import hashlib
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import TopicPartition
from kafka.record.default_records import DefaultRecordBatchBuilder

from schemas.dead_letter import (
    MAX_HEADERS_BYTES,
    MAX_KEY_BYTES,
    DeadLetterHeaders,
    ErrorType,
    replay_count,
)
from worker.pipeline.dlq_policy import DlqPolicy
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.base import MessageRejected, Step
from worker.pipeline.work_items import Output, Stage, WorkItem


def record_bytes(key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]]) -> int:
    """The size kafka-python's ``send()`` checks against ``max_request_size`` (uncompressed:
    the record alone in a batch)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter record: the original key and value bytes, or as much of them as a dead
    letter holds (see :func:`build_dead_letter`), plus the ``DeadLetterHeaders`` (reason,
    source topic/partition/offset, worker, time, what was cut, and how often the record had
    already been replayed: the ``replay.count`` header of the input record)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def build_dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    error_type: ErrorType,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    worker_id: str,
    max_value_bytes: int,
    replay_count: int = 0,
    max_record_bytes: int | None = None,
) -> DeadLetter:
    """The dead letter of the record at ``topic``/``partition``/``offset``, always sendable:

    * a key above :data:`MAX_KEY_BYTES` is cut to it (headers ``error.key_truncated_from``: the
      original size, ``error.key_sha256``: the original key's hash);
    * a value above ``max_value_bytes`` is cut to it (``error.truncated_from``,
      ``error.truncated_sha256``);
    * the headers stay within :data:`MAX_HEADERS_BYTES` (``error.message`` is cut,
      ``error.message_truncated_from``);
    * the whole record stays within ``max_record_bytes`` (the producer's ``max_request_size``
      and the dead-letter topic's ``max.message.bytes``, the smaller): the value is cut further
      when it would not (the start-up check makes the limit hold any accepted document whole).
    """
    fields = {"error_type": error_type, "source_topic": topic, "source_partition": partition,
              "source_offset": offset, "worker_id": worker_id, "replay_count": replay_count}
    letter = _assemble(key, value, max_value_bytes, message, fields)
    while max_record_bytes is not None and letter.value:
        excess = record_bytes(letter.key, letter.value, letter.headers) - max_record_bytes
        if excess <= 0:
            break
        # Each round cuts the value by what is too much (the cut's own headers may add some).
        letter = _assemble(key, value, max(0, len(letter.value) - excess), message, fields)
    return letter


def _assemble(key: bytes | None, value: bytes | None, max_value_bytes: int, message: str,
              fields: dict) -> DeadLetter:
    """The dead letter with its value cut to ``max_value_bytes`` and its key and headers to
    their bounds."""
    key, key_from, key_sha256 = _cut(key, MAX_KEY_BYTES)
    value, value_from, value_sha256 = _cut(value, max_value_bytes)
    cuts = {"error_key_truncated_from": key_from, "error_key_sha256": key_sha256,
            "error_truncated_from": value_from, "error_truncated_sha256": value_sha256}
    raw = message.encode("utf-8", "backslashreplace")  # any str, lone surrogates included
    headers = _headers(raw.decode("utf-8"), cuts, fields)
    excess = _headers_bytes(headers) - MAX_HEADERS_BYTES
    if excess > 0:
        marker = len(DeadLetterHeaders.model_fields["error_message_truncated_from"].alias)
        keep = max(0, len(raw) - excess - marker - len(str(len(raw))))
        cuts["error_message_truncated_from"] = len(raw)
        headers = _headers(raw[:keep].decode("utf-8", "ignore"), cuts, fields)
    if value is None and key is None:
        value = b""  # a record needs a key or a value
    return DeadLetter(key=key, value=value, headers=headers)


def _cut(data: bytes | None, limit: int) -> tuple[bytes | None, int | None, str | None]:
    """``data`` cut to ``limit`` bytes, with its original size and SHA-256 when it was cut."""
    if data is None or len(data) <= limit:
        return data, None, None
    return data[:limit], len(data), hashlib.sha256(data).hexdigest()


def _headers(message: str, cuts: dict, fields: dict) -> list[tuple[str, bytes]]:
    return DeadLetterHeaders(error_message=message, failed_at=datetime.now(UTC), **cuts,
                             **fields).to_kafka_headers()  # None: no header


def _headers_bytes(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(name.encode("utf-8")) + len(value) for name, value in headers)


class DeadLetterStep:
    """Turns each rejected item into its dead letter and hands it to the produce step.

    Each dead letter is built to be sendable (:func:`build_dead_letter`): key, value and headers
    cut to their bounds and the whole record to ``max_record_bytes``.

    Rejections come from the decode step (not UTF-8, not JSON, schema, empty, too large) and from
    the classify step (inference failed). A record that was replayed from the dead-letter topic
    (``eurovoc-worker replay-dlq``) carries its ``replay.count`` into its new dead letter, so that
    replay can stop a record that keeps failing.

    The dead-letter limit (:class:`~worker.pipeline.dlq_policy.DlqPolicy`) judges each record
    once, in its partition's offset order, when its outcome is known: a rejection here
    (:meth:`submit`), a label through :meth:`labelled` (the classify step's hook). The registry
    settles the outcomes in offset order (``InFlightRegistry.settle``), so a dead letter waits
    until every record before it in its partition is decided, and is sent only once judged.
    The dead letter that would break the limit is not sent: it and every later one are
    abandoned (never finished, never committed) and ``limit_reached`` names the cause, on which
    the processor stops with exit code 3 after finishing the work before it. Judged dead letters
    the produce step has no room for wait here, in order, and go on from :meth:`poll`.
    """

    def __init__(
        self,
        produce: Step,
        policy: DlqPolicy,
        registry: InFlightRegistry,
        *,
        topic: str,
        worker_id: str,
        max_value_bytes: int,
        max_record_bytes: int | None = None,
    ) -> None:
        self._produce = produce
        self._policy = policy
        self._registry = registry
        self._topic = topic
        self._worker_id = worker_id
        self._max_value_bytes = max_value_bytes
        self._max_record_bytes = max_record_bytes
        self._judged: deque[WorkItem] = deque()  # dead letters judged, not yet taken by produce
        self.limit_reached: str | None = None

    def submit(self, item: WorkItem) -> None:
        """Take a rejected item: its dead letter is built now and sent once judged (never
        raises ``MessageRejected``)."""
        rejection = item.rejection
        if self.limit_reached is not None:
            self._registry.abandon(item)
            return
        if item.output is None:
            source = item.source
            letter = build_dead_letter(
                key=item.key, value=item.value, error_type=rejection.error_type,
                message=rejection.message, topic=source.topic, partition=source.partition,
                offset=source.offset, worker_id=self._worker_id,
                max_value_bytes=self._max_value_bytes, replay_count=replay_count(item.headers),
                max_record_bytes=self._max_record_bytes,
            )
            item.output = Output(self._topic, letter.key, letter.value, letter.headers)
        self._settle(item, dead_letter=True)

    def labelled(self, item: WorkItem) -> None:
        """``item`` was labelled (and handed to the produce step): judge it, and the dead letters
        after it in its partition that waited for it."""
        self._settle(item, dead_letter=False)

    def _settle(self, item: WorkItem, dead_letter: bool) -> None:
        for settled, is_dead_letter in self._registry.settle(item, dead_letter):
            source = settled.source
            partition = TopicPartition(source.topic, source.partition)
            if not is_dead_letter:
                self._policy.judge(partition, None)
                continue
            if self.limit_reached is None:
                self.limit_reached = self._policy.judge(
                    partition, settled.rejection.error_type.value)
            if self.limit_reached is not None:
                self._registry.abandon(settled)
                continue
            settled.enter(Stage.PRODUCE)
            self._judged.append(settled)
        self.poll()

    def poll(self) -> None:
        """Hand the judged dead letters to the produce step, in order, while it has room."""
        judged = self._judged
        try:
            while judged:
                if not judged[0].cancelled:
                    self._produce.submit(judged[0])
                judged.popleft()
        except MessageRejected:
            pass  # the first one stays first; the next poll tries it again

    def join(self, timeout: float | None) -> None:
        """Nothing of its own to wait for (the produce step is joined by the main chain)."""

    def close(self) -> None:
        """Forget the judged dead letters not yet sent (they stay uncommitted)."""
        self._judged.clear()
