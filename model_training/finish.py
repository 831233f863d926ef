"""The end of a training run (main process only): export the best weights, score dev and test
through the worker's engine in-process (its default inference settings: dtype auto, the
checkpoint's max length, truncation), tune thresholds on dev, measure dev and test, and write the
manifest with the inference settings next to the thresholds."""

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from model_training.callbacks import write_log_line
from model_training.export import save_manifest, write_checkpoint
from model_training.profiles import TrainConfig
from model_training.thresholds import (
    AT_LEAST_ONE_CHOICES,
    split_metrics,
    tune_thresholds,
)
from model_training.training_data import TrainingData
from schemas.manifest import CheckpointManifest, read_manifest
from worker.inference.batch_scoring import (
    inference_record,
    running_engine,
    score_documents,
)
from worker.inference.engine_settings import EngineSettings

logger = logging.getLogger(__name__)


def export_trained(
    model: PreTrainedModel,
    data: TrainingData,
    config: TrainConfig,
    output_dir: Path,
    *,
    version: str,
    training_record: dict[str, Any],
    log_file: Path,
    device: torch.device | str = "cpu",
) -> CheckpointManifest:
    names = data.label_set.names
    write_checkpoint(
        model,
        data.tokenizer,
        output_dir,
        name=config.name or default_name(config),
        version=version,
        label_names=names,
        max_length=config.max_length,
        base_model=data.base.name,
        training_args=training_record,
        data_fingerprint=data.training_fingerprint(),
        data_fingerprints=data.fingerprints(),
        extra_label_fields=data.label_set.extra,
    )
    # Thresholds and metrics come from the exported checkpoint, as the worker will run it (on the
    # device that trained it: a GPU scores dev and test in seconds where a CPU takes an hour).
    settings = EngineSettings(model=output_dir, device=str(device), warmup=False,
                              torch_threads=torch.get_num_threads())
    splits = [name for name in ("dev", "test") if name in data.splits]
    with running_engine(settings) as engine:
        probabilities = {
            split: score_documents(engine, data.splits[split].input_documents(),
                                   description=split)
            for split in splits
        }
        inference = inference_record(engine)
    truth = {split: data.splits[split].label_matrix(len(names)) for split in splits}
    tuning = tune_thresholds(
        truth["dev"],
        probabilities["dev"],
        names,
        min_positives=config.min_positives,
        at_least_one=AT_LEAST_ONE_CHOICES[config.at_least_one],
    )
    thresholds = tuning.thresholds.model_copy(
        update={"tuned_on": data.splits["dev"].fingerprint, "inference": inference}
    )
    metrics = {}
    for split in splits:
        metrics.update(split_metrics(split, truth[split], probabilities[split], thresholds, names))
    for key, values in metrics.items():
        split, _, at = key.partition("@")
        write_log_line(
            log_file, {"event": "final", "split": split, "thresholds": at or "tuned", **values}
        )
    manifest = read_manifest(output_dir).model_copy(
        update={"thresholds": thresholds, "metrics": metrics}
    )
    save_manifest(output_dir, manifest)
    logger.info("checkpoint written to %s", output_dir)
    return manifest


def default_name(config: TrainConfig) -> str:
    short = (
        config.base_model
        if config.base_model in ("minilm", "mpnet")
        else Path(config.base_model).name
    )
    return f"eurovoc-{short}-{config.profile or 'custom'}"
