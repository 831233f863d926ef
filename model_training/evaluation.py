"""Score a checkpoint on labelled data through the worker's engine, in-process, with the worker's
inference settings (``worker.inference.batch_scoring``): the quality measured is the quality the
worker delivers with the same settings."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_training.documents import HF_PREFIX, Split, load_split
from model_training.labels import LabelSet, labels_file_beside, load_label_set
from model_training.metrics import compute_metrics, per_label_metrics
from schemas.manifest import CheckpointManifest, InferenceRecord, read_manifest
from worker.inference.batch_scoring import (
    inference_record,
    running_engine,
    score_documents,
)
from worker.inference.engine_settings import EngineSettings

if TYPE_CHECKING:
    from worker.inference.engine import InferenceEngine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    manifest: CheckpointManifest
    split: Split
    labels: np.ndarray
    probabilities: np.ndarray
    inference: InferenceRecord

    def tuned_thresholds(self) -> np.ndarray:
        return np.asarray(self.manifest.threshold_vector(), dtype=np.float64)

    def metrics(self) -> dict[str, dict[str, float]]:
        """Metrics at 0.5 for every label and at the checkpoint's tuned thresholds."""
        return {
            "0.5": compute_metrics(self.labels, self.probabilities, 0.5),
            "tuned": compute_metrics(
                self.labels,
                self.probabilities,
                self.tuned_thresholds(),
                at_least_one=self.manifest.thresholds.at_least_one,
            ),
        }

    def per_label(self, *, tuned: bool = True) -> list[dict[str, float | str | int]]:
        thresholds = self.tuned_thresholds() if tuned else 0.5
        at_least_one = tuned and self.manifest.thresholds.at_least_one
        return per_label_metrics(
            self.labels,
            self.probabilities,
            thresholds,
            self.manifest.label_names,
            at_least_one=at_least_one,
        )


def label_set_for(manifest: CheckpointManifest, data: str, labels_file: str | None) -> LabelSet:
    """The checkpoint's labels; a labels file given, or found beside the data, must match them."""
    if labels_file is None and not data.startswith(HF_PREFIX):
        beside = labels_file_beside(Path(data))
        labels_file = str(beside) if beside is not None else None
    if labels_file is None:
        return LabelSet(names=manifest.label_names, source="the checkpoint's eurovoc.json")
    label_set = load_label_set(Path(labels_file))
    label_set.check_same_names(manifest.label_names, what="the checkpoint")
    return label_set


def read_labelled(
    model_dir: Path, data: str, *, split: str = "test", labels_file: str | None = None
) -> Split:
    """Split ``split`` of ``data``, with labels checked against the checkpoint's."""
    manifest = read_manifest(model_dir)
    return load_split(data, split, label_set_for(manifest, data, labels_file))


def score_split(engine: "InferenceEngine", documents: Split) -> Scored:
    """``documents`` scored by a started engine."""
    probabilities = score_documents(
        engine, documents.input_documents(), description=documents.name
    )
    logger.info("scored %d documents of %s with %s", len(documents), documents.source,
                engine.settings.model)
    labels = documents.label_matrix(len(engine.manifest.labels))
    return Scored(engine.manifest, documents, labels, probabilities, inference_record(engine))


def score(
    settings: EngineSettings,
    data: str,
    *,
    split: str = "test",
    labels_file: str | None = None,
) -> Scored:
    """Split ``split`` of ``data`` scored with the checkpoint and inference settings of
    ``settings`` (an engine of its own, stopped afterwards)."""
    documents = read_labelled(Path(settings.model), data, split=split, labels_file=labels_file)
    with running_engine(settings) as engine:
        return score_split(engine, documents)
