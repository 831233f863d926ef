"""The per-document output message published to the output topic (Kafka key = document id)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LabelScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int = Field(ge=0, description="Label index in the model's output (id2label key).")
    name: str
    score: float = Field(ge=0.0, le=1.0, description="Sigmoid probability.")


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    sha256: str = Field(description="SHA-256 of the checkpoint's safetensors weights.")


class SourceRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class LabelsMessage(BaseModel):
    """The labels predicted for one document."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    id: str = Field(description="The input document's id.")
    labels: list[LabelScore] = Field(description="Predicted label set, highest score first.")
    scores: dict[str, float] = Field(description="Probability of every label, by label name.")
    thresholds: dict[str, float] = Field(description="Threshold applied to each label.")
    model: ModelInfo
    truncated: bool = Field(description="True when tokens past max_length were not read.")
    chunks: int = Field(ge=1, description="Windows scored (1 unless chunking was used).")
    tokens: int = Field(ge=0, description="Tokens the model read for this document.")
    source: SourceRef | None = Field(
        default=None, description="Where the input came from; null when classified from a file."
    )
    produced_at: datetime = Field(description="RFC 3339 UTC time the result was built.")
