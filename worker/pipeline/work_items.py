"""What flows through the processing steps and the inference engine (no torch import here)."""

import time
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.dead_letter import ErrorType
from schemas.document import InputDocument
from schemas.labels import LabelsMessage, SourceRef
from worker.inference.requests import EngineStage


class Stage(StrEnum):
    """Where a work item is; the engine's stages are its own (``EngineStage``)."""

    DECODE = "decode"
    TOKENIZE = "tokenize"
    BATCH_QUEUE = EngineStage.BATCH_QUEUE.value
    MODEL = EngineStage.MODEL.value
    PRODUCE = "produce"
    COMMIT = "commit"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record cannot be labelled; it goes to the dead-letter topic (or is skipped)."""

    error_type: ErrorType
    message: str


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce: the label message or the dead letter of a work item."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


@dataclass(eq=False, slots=True)
class WorkItem:
    """One input record from the moment it is read (a Kafka record or a line of a file) until its
    outcome is acknowledged.

    It is the entry of the in-flight registry (``worker.pipeline.in_flight``) and the object
    every step passes on: nothing else tracks a document, so there is nothing to reconcile. Its
    ``stage`` says where it is (the watchdog's diagnosis names the stage of the oldest one);
    ``cancelled`` is set when its partition is revoked or lost, after which every step, the
    engine included, drops it without a result.
    """

    source: SourceRef | None  # topic/partition/offset; None for a line of a file
    received_at: float  # time.monotonic() when read
    key: bytes | None = None
    value: bytes | None = None  # the raw record until it is no longer needed
    # the record's, as kafka-python gives them (values may be null; replay.count: dead letters)
    headers: list[tuple[str, bytes | None]] | None = None
    document: InputDocument | None = None  # once decoded
    labels: LabelsMessage | None = None  # once classified
    rejection: Rejection | None = None  # why it cannot be labelled (→ dead letter)
    output: Output | None = None  # what the produce step sends
    stage: Stage = Stage.DECODE
    stage_since: float = field(default=0.0)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.stage_since = self.stage_since or self.received_at

    def enter(self, stage: Stage | EngineStage) -> None:
        self.stage = Stage(stage)
        self.stage_since = time.monotonic()
