"""Fine-tune a transformer for multi-label EuroVoc classification on the Hugging Face Trainer and
export the checkpoint the worker loads.

One process, or many launched by ``torchrun`` / ``accelerate launch`` (data-parallel: one process
per GPU, or gloo between CPU processes). The first process of each node reads and tokenizes the
data into the cache while the others wait, then they read it from there. The Trainer runs
training, dev evaluation every epoch, early stopping and the best weights by dev micro-F1
(``hf_trainer``); callbacks add the time budget, resume points and ``train_log.jsonl``
(``callbacks``). Only the main process tunes thresholds and exports (``finish``).

``<output>/train_state/`` holds the Trainer's checkpoints (weights, optimizer, scheduler, RNG and
callback states) and the run's settings; ``--resume`` continues from the newest checkpoint. It is
removed once the checkpoint is exported.
"""

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    TrainerCallback,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from model_training.base_models import load_for_classification
from model_training.batching import TokenizedDataset, padding_collator
from model_training.callbacks import (
    ResumePointsCallback,
    TimeBudgetCallback,
    TrainLogCallback,
)
from model_training.errors import DataError
from model_training.finish import export_trained
from model_training.hf_trainer import (
    BEST_METRIC,
    EurovocTrainer,
    WeightedBCE,
    positive_weights,
    training_arguments,
)
from model_training.metrics import dev_metrics
from model_training.precision import DevicePlan, plan_device
from model_training.profiles import TrainConfig
from model_training.training_data import TrainingData, load_training_data
from schemas.manifest import CheckpointManifest

logger = logging.getLogger(__name__)

STATE_DIR = "train_state"
LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.json"


@dataclass(frozen=True)
class RunSummary:
    steps: int
    epochs: float
    best_epoch: float | None
    stopped_by: Literal["epochs", "early_stopping", "time_budget", "stop_after_steps"]
    train_seconds: float


@dataclass(frozen=True)
class TrainResult:
    """``replica``: a process of a distributed run other than the main one (it exports nothing)."""

    status: Literal["complete", "interrupted", "replica"]
    output_dir: Path
    summary: RunSummary
    manifest: CheckpointManifest | None = None


def saved_config(output_dir: Path) -> TrainConfig:
    """The settings of the run whose state is in ``output_dir``."""
    path = Path(output_dir) / STATE_DIR / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"nothing to resume: {path} does not exist")
    return TrainConfig.model_validate_json(path.read_bytes())


def resume_point(output_dir: Path, resume: bool) -> str | None:
    """The Trainer checkpoint to continue from (``None``: a fresh run)."""
    state_dir = Path(output_dir) / STATE_DIR
    last = get_last_checkpoint(str(state_dir)) if state_dir.is_dir() else None
    if resume and last is None:
        raise DataError(f"nothing to resume: no checkpoint in {state_dir}")
    if not resume and last is not None:
        raise DataError(
            f"{output_dir} holds an interrupted run: pass --resume, or remove {state_dir}"
        )
    return last


def live_callback(trainer: EurovocTrainer, kind: type[TrainerCallback]) -> Any:
    """The callback of type ``kind`` in use (a resumed run replaces stateful callbacks)."""
    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, kind))


def run_training(config: TrainConfig, output_dir: Path, *, resume: bool = False) -> TrainResult:
    started = time.monotonic()
    load_at_start = os.getloadavg()
    output_dir = Path(output_dir)
    state_dir, log_file = output_dir / STATE_DIR, output_dir / LOG_FILE
    checkpoint = resume_point(output_dir, resume)
    if config.threads:
        torch.set_num_threads(config.threads)
    plan = plan_device(config.device, config.precision)
    args = training_arguments(config, state_dir, plan, progress_bars=sys.stderr.isatty())
    with args.main_process_first(desc="reading and tokenizing the data"):
        data = load_training_data(config)
    if args.should_save:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2), encoding="utf-8")
        if checkpoint is None:
            log_file.unlink(missing_ok=True)
    set_seed(config.seed)
    model = load_for_classification(data.base.path, data.label_set.names)
    weighted = config.pos_weight == "sqrt"
    budget = TimeBudgetCallback(config.max_train_seconds)
    points = ResumePointsCallback(config.save_state_every, config.stop_after_steps)
    trainer = EurovocTrainer(
        model=model,
        args=args,
        data_collator=padding_collator(data.tokenizer),
        train_dataset=TokenizedDataset(data.train),
        eval_dataset=TokenizedDataset(data.dev),
        processing_class=data.tokenizer,
        compute_metrics=dev_metrics,
        compute_loss_func=WeightedBCE(positive_weights(data.train.labels)) if weighted else None,
        callbacks=[
            budget,
            points,
            EarlyStoppingCallback(early_stopping_patience=config.patience),
            TrainLogCallback(
                log_file, lambda: live_callback(trainer, TimeBudgetCallback).elapsed()
            ),
        ],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    logger.info(
        "training on %d process(es), %s, %s: %s",
        args.world_size,
        plan.device,
        plan.precision,
        config.model_dump(exclude_none=True),
    )
    budget.seconds_before = time.monotonic() - started
    trainer.train(resume_from_checkpoint=checkpoint)
    summary = _summary(trainer, config, points)
    if points.interrupted:
        logger.info("stopped after %d steps as asked; resume with --resume", summary.steps)
        return TrainResult("interrupted", output_dir, summary)
    if not trainer.is_world_process_zero():
        return TrainResult("replica", output_dir, summary)
    logger.info("training stopped by %s after %.0f s", summary.stopped_by, summary.train_seconds)
    record = _training_record(config, data, trainer, plan, summary, load_at_start)
    manifest = export_trained(
        trainer.model,
        data,
        config,
        output_dir,
        version=config.version or datetime.now(UTC).strftime("%Y.%m.%d-%H%M"),
        training_record=record,
        log_file=log_file,
        device=trainer.args.device,
    )
    shutil.rmtree(state_dir, ignore_errors=True)
    return TrainResult("complete", output_dir, summary, manifest)


def _summary(
    trainer: EurovocTrainer, config: TrainConfig, points: ResumePointsCallback
) -> RunSummary:
    state = trainer.state
    budget = live_callback(trainer, TimeBudgetCallback)
    evaluations = [entry for entry in state.log_history if f"eval_{BEST_METRIC}" in entry]
    best = max(evaluations, key=lambda entry: entry[f"eval_{BEST_METRIC}"], default=None)
    if points.interrupted:
        stopped_by = "stop_after_steps"
    elif budget.stopped:
        stopped_by = "time_budget"
    elif (state.epoch or 0) < config.epochs:
        stopped_by = "early_stopping"
    else:
        stopped_by = "epochs"
    return RunSummary(
        steps=state.global_step,
        epochs=round(state.epoch or 0.0, 4),
        best_epoch=round(best["epoch"], 4) if best else None,
        stopped_by=stopped_by,
        train_seconds=budget.elapsed(),
    )


def _training_record(
    config: TrainConfig,
    data: TrainingData,
    trainer: EurovocTrainer,
    plan: DevicePlan,
    summary: RunSummary,
    load_at_start: tuple[float, float, float],
) -> dict[str, Any]:
    """What the manifest records of the run: its settings, data, speed and machine."""
    seconds = max(summary.train_seconds - data.seconds, 1e-9)
    samples = summary.epochs * len(data.train)
    return {
        **config.model_dump(),
        "train_documents": len(data.train),
        "dev_documents": len(data.dev),
        "test_documents": len(data.test) if data.test is not None else 0,
        "labels_file": data.label_set.source,
        "epochs_run": summary.epochs,
        "best_epoch": summary.best_epoch,
        "steps": summary.steps,
        "stopped_by": summary.stopped_by,
        "train_seconds": round(summary.train_seconds, 1),
        "data_seconds": round(data.seconds, 1),
        "samples_per_second": round(samples / seconds, 2),
        "tokens_per_second": round(trainer.state.num_input_tokens_seen / seconds, 1),
        "device": plan.device,
        "precision": plan.precision,
        "processes": trainer.args.world_size,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "cpu_load_average_start": [round(value, 2) for value in load_at_start],
        "cpu_load_average_end": [round(value, 2) for value in os.getloadavg()],
    }
