"""Score a checkpoint on labelled data, loaded exactly as the worker loads it."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_training.documents import HF_PREFIX, Split, load_split
from model_training.inference import predict_probabilities
from model_training.labels import LabelSet, labels_file_beside, load_label_set
from model_training.metrics import compute_metrics, per_label_metrics
from model_training.tokenization import tokenize_split
from schemas.manifest import CheckpointManifest
from worker.checkpoint import Checkpoint, load_checkpoint, read_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    checkpoint: Checkpoint
    split: Split
    labels: np.ndarray
    probabilities: np.ndarray

    @property
    def manifest(self) -> CheckpointManifest:
        return self.checkpoint.manifest

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


def score_split(
    model_dir: Path, documents: Split, *, batch_size: int = 64, device: str = "cpu"
) -> Scored:
    checkpoint = load_checkpoint(model_dir, device=device)
    manifest = checkpoint.manifest
    tokenized = tokenize_split(
        documents, checkpoint.tokenizer, manifest.max_length, len(manifest.labels)
    )
    probabilities = predict_probabilities(
        checkpoint.model,
        tokenized,
        checkpoint.tokenizer,
        batch_size=batch_size,
        description=documents.name,
    )
    logger.info("scored %d documents of %s with %s", len(documents), documents.source, model_dir)
    return Scored(checkpoint, documents, tokenized.labels, probabilities)


def score(
    model_dir: Path,
    data: str,
    *,
    split: str = "test",
    labels_file: str | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> Scored:
    documents = read_labelled(model_dir, data, split=split, labels_file=labels_file)
    return score_split(model_dir, documents, batch_size=batch_size, device=device)
