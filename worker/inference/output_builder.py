"""Probabilities + the checkpoint's thresholds → one ``LabelsMessage`` per document."""

import math
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from schemas.labels import LabelScore, LabelsMessage, ModelInfo, SourceRef
from schemas.manifest import CheckpointManifest
from worker.inference.decision import apply_thresholds


def utc_now() -> datetime:
    return datetime.now(UTC)


class OutputBuilder:
    """Builds output messages for one checkpoint (thresholds and model info computed once)."""

    def __init__(
        self, manifest: CheckpointManifest, *, now: Callable[[], datetime] = utc_now
    ) -> None:
        self.manifest = manifest
        self.label_names = manifest.label_names
        # float64, like the JSON numbers: a label is predicted exactly when the published
        # ``scores[name] >= thresholds[name]``
        self.threshold_vector = np.asarray(manifest.threshold_vector(), dtype=np.float64)
        self.thresholds = {
            name: float(value)
            for name, value in zip(self.label_names, manifest.threshold_vector(), strict=True)
        }
        self.at_least_one = manifest.thresholds.at_least_one
        self.model_info = ModelInfo(
            name=manifest.name, version=manifest.version, sha256=manifest.weights_sha256
        )
        self._now = now

    def build(
        self,
        document_id: str,
        probabilities: np.ndarray,
        *,
        truncated: bool,
        chunks: int,
        tokens: int,
        source: SourceRef | None = None,
    ) -> LabelsMessage:
        """Raises ``ValueError`` for probabilities of the wrong shape or not in [0, 1]."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.shape != (len(self.label_names),):
            raise ValueError(
                f"expected {len(self.label_names)} probabilities, got shape {probabilities.shape}"
            )
        values = [float(value) for value in probabilities]
        if not all(math.isfinite(value) and 0.0 <= value <= 1.0 for value in values):
            raise ValueError(f"probabilities must be finite and in [0, 1]: {values}")
        predicted = apply_thresholds(
            np.asarray(values, dtype=np.float64)[None, :],
            self.threshold_vector,
            at_least_one=self.at_least_one,
        )[0]
        chosen = sorted(np.flatnonzero(predicted).tolist(), key=lambda i: (-values[i], i))
        return LabelsMessage(
            id=document_id,
            labels=[
                LabelScore(id=index, name=self.label_names[index], score=values[index])
                for index in chosen
            ],
            scores=dict(zip(self.label_names, values, strict=True)),
            thresholds=self.thresholds,
            model=self.model_info,
            truncated=truncated,
            chunks=chunks,
            tokens=tokens,
            source=source,
            produced_at=self._now(),
        )
