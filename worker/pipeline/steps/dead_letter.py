"""Dead-letter step: a record that cannot be labelled becomes a dead letter for the produce step."""

from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.dead_letter import DeadLetterHeaders, ErrorType, replay_count
from worker.pipeline.dlq_policy import DlqPolicy
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.base import Step
from worker.pipeline.work_items import Output, Stage, WorkItem


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter record: the original key and value bytes unchanged, plus the
    ``DeadLetterHeaders`` (reason, source topic/partition/offset, worker, time, and how often the
    record had already been replayed: the ``replay.count`` header of the input record)."""

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
) -> DeadLetter:
    """The dead letter of the record at ``topic``/``partition``/``offset``. A value above
    ``max_value_bytes`` (it could not be produced: the broker's message size limit) is cut to that
    size and marked with the ``error.truncated_from`` header
    (``DeadLetterHeaders.error_truncated_from``): the original length."""
    truncated_from = None
    if value is not None and len(value) > max_value_bytes:
        truncated_from = len(value)
        value = value[:max_value_bytes]
    headers = DeadLetterHeaders(
        error_type=error_type,
        error_message=message,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        worker_id=worker_id,
        failed_at=datetime.now(UTC),
        error_truncated_from=truncated_from,  # None: no header
        replay_count=replay_count,
    ).to_kafka_headers()
    if value is None and key is None:
        value = b""  # a record needs a key or a value
    return DeadLetter(key=key, value=value, headers=headers)


class DeadLetterStep:
    """Turns each rejected item into its dead letter and hands it to the produce step.

    Rejections come from the decode step (not UTF-8, not JSON, schema, empty, too large) and from
    the classify step (inference failed). A record that was replayed from the dead-letter topic
    (``eurovoc-worker replay-dlq``) carries its ``replay.count`` into its new dead letter, so that
    replay can stop a record that keeps failing. Each record is counted once by the dead-letter
    limit (:class:`~worker.pipeline.dlq_policy.DlqPolicy`), at its final outcome: here when it is
    dead-lettered, by the classify step when it was labelled. The record that would break the
    limit is not sent: it and every later rejection are abandoned (never finished, never
    committed) and ``limit_reached`` names the cause, on which the processor stops with exit
    code 3 after finishing the work before it.
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
    ) -> None:
        self._produce = produce
        self._policy = policy
        self._registry = registry
        self._topic = topic
        self._worker_id = worker_id
        self._max_value_bytes = max_value_bytes
        self.limit_reached: str | None = None

    def submit(self, item: WorkItem) -> None:
        rejection = item.rejection
        if self.limit_reached is None:
            self.limit_reached = self._policy.check(rejection.error_type.value)
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
            )
            item.output = Output(self._topic, letter.key, letter.value, letter.headers)
        item.enter(Stage.PRODUCE)
        self._produce.submit(item)  # MessageRejected: nothing recorded, the same item comes back
        self._policy.record_dead_letter(rejection.error_type.value)

    def poll(self) -> None:
        """Nothing of its own: it hands every item on in ``submit``."""

    def join(self, timeout: float | None) -> None:
        """Nothing of its own to wait for (the produce step is joined by the main chain)."""

    def close(self) -> None:
        """Nothing to release."""
