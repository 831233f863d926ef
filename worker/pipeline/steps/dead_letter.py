"""Dead-letter step: a record that cannot be labelled becomes a dead letter for the produce step."""

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import TopicPartition

from schemas.dead_letter import DeadLetterHeaders, ErrorType, replay_count
from worker.pipeline.dlq_policy import DlqPolicy
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.base import MessageRejected, Step
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
    ) -> None:
        self._produce = produce
        self._policy = policy
        self._registry = registry
        self._topic = topic
        self._worker_id = worker_id
        self._max_value_bytes = max_value_bytes
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
