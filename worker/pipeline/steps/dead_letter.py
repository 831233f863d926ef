"""Dead-letter routing: a record that cannot be labelled becomes a dead letter for the produce step.

Rejections come from the decode step (not UTF-8, not JSON, schema, empty, too large) and from
the classify step (inference failed). A record that was replayed from the dead-letter topic
(``eurovoc-worker replay-dlq``) carries its ``replay.count`` into its new dead letter, so that
replay can stop a record that keeps failing. Each record is counted once by the dead-letter limit, at
its final outcome: here when it is dead-lettered, by the classify step when it was labelled. The
record that would break the limit is not sent: it and every later rejection are abandoned
(never finished, never committed) and ``limit_reached`` names the cause, on which the processor
stops with exit code 3 after finishing the work before it.
"""

from schemas.dead_letter import replay_count
from worker.pipeline.dlq_policy import DlqPolicy, build_dead_letter
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.base import Step
from worker.pipeline.work_items import Output, Stage, WorkItem


class DeadLetterStep:
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
