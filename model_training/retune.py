"""Re-tune a checkpoint's thresholds, never on its test split, and keep its metrics true.

The data's content fingerprint (independent of file name, place and compression) is compared with
the test split's recorded in the manifest; the test split by name is refused too. The new
thresholds record the fingerprint they were tuned on. Every record of ``metrics`` that depends on
the thresholds (``dev``, ``test``, ...) is measured again when its data can be found (the tuning
data, or a split of the same data directory whose fingerprint matches the manifest's), or removed
with a warning; the ``<split>@0.5`` records do not depend on them and stay.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model_training.documents import Split
from model_training.errors import DataError
from model_training.evaluation import Scored, read_labelled, score_split
from model_training.thresholds import (
    AT_LEAST_ONE_CHOICES,
    TuningResult,
    split_metrics,
    tune_thresholds,
)
from schemas.manifest import CheckpointManifest, read_manifest
from worker.inference.batch_scoring import running_engine
from worker.inference.engine_settings import EngineSettings

if TYPE_CHECKING:
    from worker.inference.engine import InferenceEngine

logger = logging.getLogger(__name__)

TEST_SPLIT = "test"
UNTUNED_SUFFIX = "@0.5"


@dataclass(frozen=True)
class Retuned:
    manifest: CheckpointManifest
    tuning: TuningResult
    scored: Scored
    refreshed: list[str]
    removed: list[str]


def refuse_test_data(manifest: CheckpointManifest, split: str, documents: Split) -> None:
    """``DataError`` when ``documents`` are the checkpoint's test split (by name or content)."""
    if split == TEST_SPLIT:
        raise DataError(
            "refusing to tune thresholds on the test split: its numbers would no longer be a "
            "test; tune on dev (--split dev) or other held-out data"
        )
    recorded = manifest.data_fingerprints.get(TEST_SPLIT)
    if recorded is not None and documents.fingerprint == recorded:
        raise DataError(
            f"refusing to tune thresholds on {documents.source}: it is the test split this "
            f"checkpoint is measured on (content fingerprint {recorded}); tune on dev or other "
            "held-out data"
        )


def retune(
    settings: EngineSettings,
    data: str,
    *,
    split: str = "dev",
    labels_file: str | None = None,
    min_positives: int = 20,
    at_least_one: str = "auto",
) -> Retuned:
    """New thresholds from ``split`` of ``data`` scored by the worker's engine with ``settings``
    (recorded next to them), and the manifest they belong in (not written)."""
    model_dir = Path(settings.model)
    manifest = read_manifest(model_dir)
    documents = read_labelled(model_dir, data, split=split, labels_file=labels_file)
    refuse_test_data(manifest, split, documents)
    with running_engine(settings) as engine:
        return _retune(engine, manifest, data, split, documents, labels_file,
                       min_positives=min_positives, at_least_one=at_least_one)


def _retune(
    engine: "InferenceEngine",
    manifest: CheckpointManifest,
    data: str,
    split: str,
    documents: Split,
    labels_file: str | None,
    *,
    min_positives: int,
    at_least_one: str,
) -> Retuned:
    model_dir = Path(engine.settings.model)
    scored = score_split(engine, documents)
    names = manifest.label_names
    tuning = tune_thresholds(
        scored.labels,
        scored.probabilities,
        names,
        min_positives=min_positives,
        at_least_one=AT_LEAST_ONE_CHOICES[at_least_one],
    )
    thresholds = tuning.thresholds.model_copy(
        update={"tuned_on": documents.fingerprint, "inference": scored.inference}
    )
    metrics = {
        key: values for key, values in manifest.metrics.items() if key.endswith(UNTUNED_SUFFIX)
    }
    metrics.update(split_metrics(split, scored.labels, scored.probabilities, thresholds, names))
    fingerprints = {**manifest.data_fingerprints, split: documents.fingerprint}
    refreshed, removed = [split], []
    for key in manifest.metrics:
        if key.endswith(UNTUNED_SUFFIX) or key == split:
            continue
        other = _recorded_split(model_dir, data, key, fingerprints.get(key), labels_file)
        if other is None:
            removed.append(key)
            logger.warning(
                "metrics record %r removed: it was measured at the old thresholds%s",
                key,
                "" if "@" in key else f" and its data is not in {data}; measure it again with "
                "eurovoc-train evaluate",
            )
            continue
        rescored = score_split(engine, other)
        metrics.update(
            split_metrics(key, rescored.labels, rescored.probabilities, thresholds, names)
        )
        refreshed.append(key)
    updated = manifest.model_copy(
        update={"thresholds": thresholds, "metrics": metrics, "data_fingerprints": fingerprints}
    )
    return Retuned(updated, tuning, scored, refreshed, removed)


def _recorded_split(
    model_dir: Path, data: str, split: str, fingerprint: str | None, labels_file: str | None
) -> Split | None:
    """Split ``split`` of the data directory ``data`` when it is the data the manifest recorded."""
    if "@" in split or fingerprint is None or not Path(data).is_dir():
        return None
    try:
        documents = read_labelled(model_dir, data, split=split, labels_file=labels_file)
    except DataError:
        return None
    return documents if documents.fingerprint == fingerprint else None
