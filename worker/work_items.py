"""What flows between the consumer loop and the inference engine (no torch import here)."""

import time
from dataclasses import dataclass

from schemas.document import InputDocument
from schemas.labels import LabelsMessage, SourceRef


@dataclass(frozen=True, slots=True)
class WorkItem:
    document: InputDocument
    source: SourceRef | None  # topic/partition/offset; None when classifying files
    received_at: float  # time.monotonic() when consumed


@dataclass(frozen=True, slots=True)
class WorkResult:
    item: WorkItem
    message: LabelsMessage | None  # on success
    error: str | None  # on per-document failure (→ dead letter, ErrorType.INFERENCE)

    @property
    def ok(self) -> bool:
        return self.error is None


class EngineFailed(RuntimeError):
    """A fatal error stopped the engine; ``__cause__`` is the original exception."""


def work_item(document: InputDocument, source: SourceRef | None = None) -> WorkItem:
    """A ``WorkItem`` received now (convenience for files and tests)."""
    return WorkItem(document=document, source=source, received_at=time.monotonic())
