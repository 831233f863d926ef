"""What the engine is handed (a scoring request) and what it hands back (an engine result)."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from schemas.document import InputDocument
from schemas.labels import LabelsMessage, SourceRef


class EngineStage(StrEnum):
    """The stages the engine moves a request through (the watchdog names them when the oldest
    document is stuck there)."""

    BATCH_QUEUE = "batch queue"
    MODEL = "model"


class ScoringRequest(Protocol):
    """What the engine needs of a submitted item: its decoded ``document``, the ``source`` to
    name in the label message, ``cancelled`` (set by the owner: the engine then drops the item
    wherever it finds it, without a result) and ``enter`` to record the engine stage it is in.

    The pipeline's ``WorkItem`` is one; :class:`DocumentRequest` is the plain one.
    """

    document: InputDocument
    source: SourceRef | None
    cancelled: bool

    def enter(self, stage: EngineStage) -> None: ...


@dataclass(eq=False, slots=True)
class DocumentRequest:
    """A document scored outside the Kafka pipeline (files, in-process batch scoring, tests):
    a :class:`ScoringRequest` that only remembers the stage it is in."""

    document: InputDocument
    source: SourceRef | None = None
    cancelled: bool = False
    stage: EngineStage | None = None

    def enter(self, stage: EngineStage) -> None:
        self.stage = stage


R = TypeVar("R", bound=ScoringRequest)


@dataclass(frozen=True, slots=True)
class EngineResult(Generic[R]):
    """What the engine hands back for one submitted request: the label message on success,
    else the reason it could not be scored (the pipeline dead-letters it as an inference
    error). A cancelled request gets no result."""

    item: R
    message: LabelsMessage | None
    error: str | None


class EngineFailed(RuntimeError):
    """A fatal error stopped the engine; ``__cause__`` is the original exception."""
