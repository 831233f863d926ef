"""The checkpoint manifest (``eurovoc.json``) that training writes and the worker reads."""

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILENAME = "eurovoc.json"


class LabelDef(BaseModel):
    """One output label; ``id`` is the model's output index."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: int = Field(ge=0)
    name: str = Field(min_length=1)


class InferenceRecord(BaseModel):
    """The worker's inference settings a checkpoint's thresholds were tuned with (``auto`` values
    resolved); the worker scores the same way unless it is configured otherwise."""

    model_config = ConfigDict(frozen=True)

    device: str = Field(description='Device type: "cpu" or "cuda".')
    dtype: Literal["float32", "float16", "bfloat16"]
    max_length: int = Field(ge=8, description="Tokens per window.")
    long_documents: Literal["truncate", "chunk"]
    max_chunks: int | None = Field(default=None, description="Chunk mode: windows per document.")
    chunk_stride: int | None = Field(default=None, description="Chunk mode: tokens shared.")
    chunk_aggregation: str | None = Field(
        default=None, description="Chunk mode: how window probabilities combine."
    )


class Thresholds(BaseModel):
    """Decision thresholds tuned on dev: one global value and optional per-label overrides."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    global_threshold: float = Field(default=0.5, alias="global", gt=0.0, lt=1.0)
    per_label: dict[str, float] = Field(
        default_factory=dict, description="Label name -> threshold; absent labels use global."
    )
    at_least_one: bool = Field(
        default=False, description="If no label passes, predict the single highest-scoring one."
    )
    tuned_on: str | None = Field(
        default=None,
        description="Content fingerprint of the data the thresholds were tuned on (never the "
        "test split's).",
    )
    inference: InferenceRecord | None = Field(
        default=None,
        description="The worker's inference settings the thresholds were tuned with (the "
        "engine scored the tuning data in-process).",
    )

    def for_label(self, name: str) -> float:
        return self.per_label.get(name, self.global_threshold)


class CheckpointManifest(BaseModel):
    """Everything the worker needs to run a checkpoint, besides the weights and tokenizer."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    format_version: Literal[1] = 1
    name: str = Field(min_length=1, description="Model name shown in outputs.")
    version: str = Field(min_length=1, description="Model version shown in outputs.")
    problem_type: Literal["multi_label_classification"] = "multi_label_classification"
    labels: list[LabelDef] = Field(min_length=1, description="In output-index order.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    max_length: int = Field(ge=8, description="Tokens per sequence the model was trained with.")
    base_model: str
    weights_file: str = "model.safetensors"
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    data_fingerprint: str | None = Field(
        default=None, description="Fingerprints of the training data: train=...;dev=..."
    )
    data_fingerprints: dict[str, str] = Field(
        default_factory=dict,
        description="Split name (train, dev, test) -> content fingerprint of the data read.",
    )
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Split name (dev, test, ...) -> metric name -> value."
    )
    training_args: dict[str, Any] = Field(default_factory=dict)
    package_version: str
    git_commit: str | None = None
    created_at: datetime

    @model_validator(mode="after")
    def _labels_are_dense_and_unique(self) -> "CheckpointManifest":
        ids = [label.id for label in self.labels]
        if ids != list(range(len(ids))):
            raise ValueError(f"label ids must be 0..{len(ids) - 1} in order, got {ids}")
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names):
            raise ValueError("label names must be unique")
        unknown = set(self.thresholds.per_label) - set(names)
        if unknown:
            raise ValueError(f"thresholds name unknown labels: {sorted(unknown)}")
        return self

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def threshold_vector(self) -> list[float]:
        """Thresholds in output-index order."""
        return [self.thresholds.for_label(name) for name in self.label_names]


class CheckpointError(ValueError):
    """The checkpoint directory is missing something or is inconsistent."""


def read_manifest(path: Path) -> CheckpointManifest:
    """The manifest of the checkpoint directory ``path`` (no torch import: the worker checks
    it at start-up in a fraction of a second, the training commands read it before any model)."""
    manifest_path = Path(path) / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise CheckpointError(f"{path} is not a eurovoc checkpoint: {MANIFEST_FILENAME} is missing")
    try:
        return CheckpointManifest.model_validate_json(manifest_path.read_bytes())
    except ValueError as exc:
        raise CheckpointError(f"{manifest_path} is invalid: {exc}") from exc
