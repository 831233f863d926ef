"""Label a JSONL file of documents with a checkpoint: one output line per input document."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model_training.documents import read_jsonl
from model_training.inference import predict_probabilities
from model_training.labels import LabelSet
from model_training.tokenization import tokenize_split
from worker.checkpoint import load_checkpoint
from worker.decision import apply_thresholds

SCORE_DIGITS = 6


def predict_file(
    model_dir: Path, input_path: Path, *, batch_size: int = 64, device: str = "cpu"
) -> Iterator[dict[str, Any]]:
    """``{id, labels: [{id, name, score}] (highest first), scores: {name: score}}`` per document."""
    checkpoint = load_checkpoint(model_dir, device=device)
    manifest = checkpoint.manifest
    names = manifest.label_names
    split = read_jsonl(input_path, LabelSet(names=names), with_labels=False)
    tokenized = tokenize_split(split, checkpoint.tokenizer, manifest.max_length, len(names))
    probabilities = predict_probabilities(
        checkpoint.model,
        tokenized,
        checkpoint.tokenizer,
        batch_size=batch_size,
        description="predict",
    )
    chosen = apply_thresholds(
        probabilities, manifest.threshold_vector(), at_least_one=manifest.thresholds.at_least_one
    )
    for document, row, picked in zip(split.documents, probabilities, chosen, strict=True):
        order = sorted((int(i) for i in picked.nonzero()[0]), key=lambda i: -row[i])
        yield {
            "id": document.id,
            "labels": [
                {"id": i, "name": names[i], "score": round(float(row[i]), SCORE_DIGITS)}
                for i in order
            ],
            "scores": {name: round(float(row[i]), SCORE_DIGITS) for i, name in enumerate(names)},
        }
