"""Fine-tune a transformer for multi-label EuroVoc classification and export a checkpoint.

Dynamic padding and length-grouped batches; bf16 autocast on CUDA (fp16 with loss scaling where
bf16 is missing), fp32 on CPU; AdamW with linear warm-up and decay, gradient accumulation, dev
evaluation every epoch, best weights by dev micro-F1, early stopping. Every evaluation is a line of
``train_log.jsonl``. ``train_state/`` holds what a resumed run needs (model, optimizer, scheduler,
sampler position, RNG states) and is removed once the checkpoint is exported.
"""

import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import torch
from safetensors.torch import load_model, save_model
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
    set_seed,
)

from model_training.base_models import (
    ResolvedModel,
    load_for_classification,
    load_tokenizer,
    resolve_base_model,
)
from model_training.batching import Collator, LengthGroupedBatchSampler, TokenizedDataset
from model_training.documents import (
    HF_PREFIX,
    Split,
    label_set_for_data,
    load_split,
    resolve_split_path,
)
from model_training.errors import DataError
from model_training.export import write_checkpoint
from model_training.inference import autocast_context, predict_probabilities
from model_training.labels import LabelSet
from model_training.metrics import compute_metrics
from model_training.profiles import TrainConfig, data_or_default
from model_training.thresholds import AT_LEAST_ONE_CHOICES, threshold_array, tune_thresholds
from model_training.tokenization import TokenizedSplit, cache_root, tokenize_split
from schemas.manifest import CheckpointManifest

logger = logging.getLogger(__name__)

STATE_DIR = "train_state"
LOG_FILE = "train_log.jsonl"


@dataclass
class Progress:
    """Where training stands; saved with every resume state."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best_micro_f1: float = -1.0
    best_epoch: int = -1
    stale_epochs: int = 0
    train_seconds: float = 0.0
    tokenize_seconds: float = 0.0
    samples: int = 0
    tokens: int = 0
    stopped_by: str = "epochs"
    epoch_loss: list[float] = field(default_factory=lambda: [0.0, 0.0])


@dataclass(frozen=True)
class TrainResult:
    status: Literal["complete", "interrupted"]
    output_dir: Path
    progress: Progress
    manifest: CheckpointManifest | None = None


@dataclass(frozen=True)
class Prepared:
    label_set: LabelSet
    base: ResolvedModel
    tokenizer: PreTrainedTokenizerBase
    train: TokenizedSplit
    dev: TokenizedSplit
    test: TokenizedSplit | None
    fingerprint: str
    tokenize_seconds: float


@dataclass(frozen=True)
class Parts:
    """What an optimizer step touches."""

    model: PreTrainedModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None


def resolve_device(config: TrainConfig) -> tuple[torch.device, torch.dtype | None]:
    """The training device and the autocast dtype (``None``: plain fp32)."""
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        if config.precision not in ("auto", "fp32"):
            raise DataError(f"precision {config.precision} needs CUDA; use fp32 on {device}")
        return device, None
    if config.precision == "fp32":
        return device, None
    if config.precision == "auto":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.bfloat16 if config.precision == "bf16" else torch.float16


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (
            numpy_state[0],
            torch.from_numpy(numpy_state[1].astype(np.int64)),
            *numpy_state[2:],
        ),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


class Trainer:
    def __init__(self, config: TrainConfig, output_dir: Path) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.state_dir = self.output_dir / STATE_DIR
        self.device, self.autocast_dtype = resolve_device(config)
        self.progress = Progress()
        self._best_dev_probabilities: np.ndarray | None = None
        self._load_at_start = os.getloadavg()

    # ----------------------------------------------------------------- preparation
    def prepare(self) -> Prepared:
        started = time.monotonic()
        data = data_or_default(self.config.data)
        label_set = label_set_for_data(data, self.config.labels)
        train = load_split(data, "train", label_set).subset(
            self.config.train_subset, strategy=self.config.subset_strategy, seed=self.config.seed
        )
        dev = load_split(data, "dev", label_set)
        test = self._optional_test(data, label_set)
        base = resolve_base_model(self.config.base_model)
        tokenizer = load_tokenizer(base.path)
        cache = cache_root() / "tokenized"

        def tokenize(split: Split) -> TokenizedSplit:
            return tokenize_split(
                split, tokenizer, self.config.max_length, len(label_set), cache_dir=cache
            )

        prepared = Prepared(
            label_set=label_set,
            base=base,
            tokenizer=tokenizer,
            train=tokenize(train),
            dev=tokenize(dev),
            test=tokenize(test) if test is not None else None,
            fingerprint=f"train={train.fingerprint};dev={dev.fingerprint}",
            tokenize_seconds=time.monotonic() - started,
        )
        logger.info(
            "data: %d train, %d dev, %s test documents, %d labels (%s)",
            len(train),
            len(dev),
            len(test) if test is not None else "no",
            len(label_set),
            label_set.source,
        )
        return prepared

    @staticmethod
    def _optional_test(data: str, label_set: LabelSet) -> Split | None:
        if not data.startswith(HF_PREFIX):
            try:
                resolve_split_path(Path(data), "test")
            except DataError:
                return None
        return load_split(data, "test", label_set)

    # ----------------------------------------------------------------- state
    def _log(self, event: dict[str, Any]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        line = {"time": datetime.now(UTC).isoformat(), **event}
        with (self.output_dir / LOG_FILE).open("ab") as handle:
            handle.write(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def _save_state(self, parts: "Parts") -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        save_model(parts.model, str(self.state_dir / "model.safetensors"))
        state = {
            "config": self.config.model_dump(),
            "progress": asdict(self.progress),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
            "rng": _rng_state(),
        }
        partial = self.state_dir / "state.pt.tmp"
        torch.save(state, partial)
        partial.replace(self.state_dir / "state.pt")
        logger.info("saved resumable state at step %d", self.progress.step)

    def _load_state(self, parts: "Parts") -> None:
        state = torch.load(self.state_dir / "state.pt", map_location="cpu", weights_only=False)
        load_model(parts.model, str(self.state_dir / "model.safetensors"), device=str(self.device))
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.scheduler.load_state_dict(state["scheduler"])
        if parts.scaler is not None and state["scaler"] is not None:
            parts.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        _set_rng_state(state["rng"])
        logger.info(
            "resumed at epoch %d, batch %d, step %d",
            self.progress.epoch,
            self.progress.batch_in_epoch,
            self.progress.step,
        )

    @staticmethod
    def saved_config(output_dir: Path) -> TrainConfig:
        """The settings of the interrupted run in ``output_dir``."""
        state_file = Path(output_dir) / STATE_DIR / "state.pt"
        if not state_file.is_file():
            raise DataError(f"nothing to resume: {state_file} does not exist")
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        return TrainConfig(**state["config"])

    # ----------------------------------------------------------------- training
    def run(self, *, resume: bool = False) -> TrainResult:
        if not resume and (self.state_dir / "state.pt").exists():
            raise DataError(
                f"{self.output_dir} holds an interrupted run: "
                f"pass --resume, or remove {self.state_dir}"
            )
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        set_seed(self.config.seed)
        prepared = self.prepare()
        set_seed(self.config.seed)
        model = load_for_classification(prepared.base.path, prepared.label_set.names)
        parts = self._parts(model.to(self.device), len(prepared.train))
        if resume:
            self._load_state(parts)
        else:
            self.progress.train_seconds = prepared.tokenize_seconds
            self.progress.tokenize_seconds = prepared.tokenize_seconds
            (self.output_dir / LOG_FILE).unlink(missing_ok=True)
        loader, sampler = self._train_loader(prepared)
        while self.progress.epoch < self.config.epochs:
            outcome = self._train_epoch(parts, loader, sampler)
            if outcome == "interrupted":
                return TrainResult("interrupted", self.output_dir, self.progress)
            self.progress.epoch += 1
            self.progress.batch_in_epoch = 0
            self._end_of_epoch(parts.model, prepared)
            if outcome == "time_budget" or self.progress.stale_epochs >= self.config.patience:
                self.progress.stopped_by = outcome if outcome == "time_budget" else "early_stopping"
                logger.info("training stopped: %s", self.progress.stopped_by)
                break
            if self.progress.epoch < self.config.epochs:
                self._save_state(parts)
        manifest = self._finish(parts.model, prepared)
        return TrainResult("complete", self.output_dir, self.progress, manifest)

    def _parts(self, model: PreTrainedModel, train_size: int) -> Parts:
        """AdamW (no decay on biases and LayerNorm), linear warm-up and decay, fp16 loss scaler."""
        named = list(model.named_parameters())
        groups = [
            {
                "params": [p for n, p in named if not _no_decay(n)],
                "weight_decay": self.config.weight_decay,
            },
            {"params": [p for n, p in named if _no_decay(n)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.config.learning_rate)
        batches = math.ceil(train_size / self.config.batch_size)
        total_steps = self.config.epochs * math.ceil(batches / self.config.grad_accum)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, round(self.config.warmup_ratio * total_steps), total_steps
        )
        scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        return Parts(model, optimizer, scheduler, scaler)

    def _train_loader(self, prepared: Prepared) -> tuple[DataLoader, LengthGroupedBatchSampler]:
        sampler = LengthGroupedBatchSampler(
            prepared.train.lengths,
            self.config.batch_size,
            seed=self.config.seed,
            group_by_length=self.config.group_by_length,
        )
        # Its own generator: creating an iterator must not draw from the global RNG (resume).
        loader = DataLoader(
            TokenizedDataset(prepared.train),
            batch_sampler=sampler,
            collate_fn=Collator(prepared.tokenizer),
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        return loader, sampler

    def _train_epoch(
        self, parts: Parts, loader: DataLoader, sampler: LengthGroupedBatchSampler
    ) -> Literal["done", "interrupted", "time_budget"]:
        """Train from the current position to the end of the epoch, or until told to stop."""
        config, progress = self.config, self.progress
        batches_per_epoch = math.ceil(len(sampler.lengths) / config.batch_size)
        sampler.set_epoch(progress.epoch, skip=progress.batch_in_epoch)
        segment_start = time.monotonic()
        parts.model.train()
        bar = tqdm(
            loader,
            desc=f"epoch {progress.epoch + 1}/{config.epochs}",
            unit="batch",
            total=batches_per_epoch,
            initial=progress.batch_in_epoch,
            disable=None,
        )
        outcome: Literal["done", "interrupted", "time_budget"] = "done"
        for batch in bar:
            self._backward(parts, {key: value.to(self.device) for key, value in batch.items()})
            bar.set_postfix(loss=f"{progress.epoch_loss[0] / progress.epoch_loss[1]:.4f}")
            if (
                progress.batch_in_epoch % config.grad_accum
                and progress.batch_in_epoch < batches_per_epoch
            ):
                continue
            self._optimizer_step(parts)
            elapsed = progress.train_seconds + time.monotonic() - segment_start
            if progress.step % config.log_every == 0:
                logger.info(
                    "step %d: loss %.4f, lr %.2e, %.0f s, %d samples",
                    progress.step,
                    progress.epoch_loss[0] / progress.epoch_loss[1],
                    parts.scheduler.get_last_lr()[0],
                    elapsed,
                    progress.samples,
                )
            if config.stop_after_steps is not None and progress.step >= config.stop_after_steps:
                outcome = "interrupted"
                break
            if progress.step % config.save_state_every == 0:
                self._save_state(parts)
            if config.max_train_seconds is not None and elapsed >= config.max_train_seconds:
                outcome = "time_budget"
                break
        bar.close()
        progress.train_seconds += time.monotonic() - segment_start
        if outcome == "interrupted":
            self._save_state(parts)
            logger.info("stopped after %d steps as asked; resume with --resume", progress.step)
        return outcome

    def _backward(self, parts: Parts, batch: dict[str, torch.Tensor]) -> None:
        progress = self.progress
        with autocast_context(self.device, self.autocast_dtype):
            loss = parts.model(**batch).loss
        scaled = loss / self.config.grad_accum
        (parts.scaler.scale(scaled) if parts.scaler is not None else scaled).backward()
        progress.batch_in_epoch += 1
        progress.samples += len(batch["labels"])
        progress.tokens += int(batch["attention_mask"].sum())
        progress.epoch_loss[0] += float(loss.detach())
        progress.epoch_loss[1] += 1

    def _optimizer_step(self, parts: Parts) -> None:
        if parts.scaler is not None:
            parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), self.config.max_grad_norm)
        if parts.scaler is not None:
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
        else:
            parts.optimizer.step()
        parts.scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1

    def _end_of_epoch(self, model: PreTrainedModel, prepared: Prepared) -> None:
        progress = self.progress
        probabilities = predict_probabilities(
            model,
            prepared.dev,
            prepared.tokenizer,
            batch_size=self.config.eval_batch_size,
            autocast_dtype=self.autocast_dtype,
            description="dev",
        )
        metrics = compute_metrics(prepared.dev.labels, probabilities, 0.5)
        loss_sum, loss_count = progress.epoch_loss
        self._log(
            {
                "event": "eval",
                "split": "dev",
                "thresholds": "0.5",
                "epoch": progress.epoch,
                "step": progress.step,
                "train_loss": loss_sum / max(loss_count, 1),
                "train_seconds": progress.train_seconds,
                **metrics,
            }
        )
        progress.epoch_loss = [0.0, 0.0]
        logger.info("epoch %d: dev micro-F1 %.4f at 0.5", progress.epoch, metrics["micro_f1"])
        if metrics["micro_f1"] > progress.best_micro_f1:
            progress.best_micro_f1 = metrics["micro_f1"]
            progress.best_epoch = progress.epoch
            progress.stale_epochs = 0
            self.state_dir.mkdir(parents=True, exist_ok=True)
            save_model(model, str(self.state_dir / "best.safetensors"))
            # Full-precision dev scores of the best weights are what threshold tuning needs.
            self._best_dev_probabilities = probabilities if self.autocast_dtype is None else None
        else:
            progress.stale_epochs += 1

    # ----------------------------------------------------------------- export
    def _finish(self, model: PreTrainedModel, prepared: Prepared) -> CheckpointManifest:
        best = self.state_dir / "best.safetensors"
        if best.is_file():
            load_model(model, str(best), device=str(self.device))
        names = prepared.label_set.names
        model.eval()

        def score(split: TokenizedSplit, description: str) -> np.ndarray:
            return predict_probabilities(
                model,
                split,
                prepared.tokenizer,
                batch_size=self.config.eval_batch_size,
                description=description,
            )

        dev_probabilities = self._best_dev_probabilities
        if dev_probabilities is None:
            dev_probabilities = score(prepared.dev, "dev")
        tuning = tune_thresholds(
            prepared.dev.labels,
            dev_probabilities,
            names,
            min_positives=self.config.min_positives,
            at_least_one=AT_LEAST_ONE_CHOICES[self.config.at_least_one],
        )
        thresholds = tuning.thresholds
        vector = threshold_array(thresholds, names)
        splits = {"dev": (prepared.dev.labels, dev_probabilities)}
        if prepared.test is not None:
            splits["test"] = (prepared.test.labels, score(prepared.test, "test"))
        metrics: dict[str, dict[str, float]] = {}
        for split, (labels, probabilities) in splits.items():
            metrics[f"{split}@0.5"] = compute_metrics(labels, probabilities, 0.5)
            metrics[split] = compute_metrics(
                labels, probabilities, vector, at_least_one=thresholds.at_least_one
            )
            for key, thresholds_name in ((f"{split}@0.5", "0.5"), (split, "tuned")):
                self._log(
                    {
                        "event": "final",
                        "split": split,
                        "thresholds": thresholds_name,
                        **metrics[key],
                    }
                )
        manifest = write_checkpoint(
            model,
            prepared.tokenizer,
            self.output_dir,
            name=self.config.name or self._default_name(),
            version=self.config.version or datetime.now(UTC).strftime("%Y.%m.%d-%H%M"),
            label_names=names,
            max_length=self.config.max_length,
            base_model=prepared.base.name,
            thresholds=thresholds,
            metrics=metrics,
            training_args=self._training_record(prepared),
            data_fingerprint=prepared.fingerprint,
            extra_label_fields=prepared.label_set.extra,
        )
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return manifest

    def _default_name(self) -> str:
        short = (
            self.config.base_model
            if self.config.base_model in ("minilm", "mpnet")
            else Path(self.config.base_model).name
        )
        return f"eurovoc-{short}-{self.config.profile or 'custom'}"

    def _training_record(self, prepared: Prepared) -> dict[str, Any]:
        progress = self.progress
        seconds = max(progress.train_seconds - progress.tokenize_seconds, 1e-9)
        return {
            **self.config.model_dump(),
            "train_documents": len(prepared.train),
            "dev_documents": len(prepared.dev),
            "test_documents": len(prepared.test) if prepared.test is not None else 0,
            "labels_file": prepared.label_set.source,
            "epochs_run": progress.epoch,
            "best_epoch": progress.best_epoch,
            "steps": progress.step,
            "stopped_by": progress.stopped_by,
            "train_seconds": round(progress.train_seconds, 1),
            "tokenize_seconds": round(progress.tokenize_seconds, 1),
            "samples_per_second": round(progress.samples / seconds, 2),
            "tokens_per_second": round(progress.tokens / seconds, 1),
            "device": str(self.device),
            "autocast": str(self.autocast_dtype).removeprefix("torch.")
            if self.autocast_dtype
            else "fp32",
            "torch_threads": torch.get_num_threads(),
            "cpu_load_average_start": [round(value, 2) for value in self._load_at_start],
            "cpu_load_average_end": [round(value, 2) for value in os.getloadavg()],
        }
