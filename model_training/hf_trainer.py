"""The Hugging Face ``Trainer`` as eurovoc-train runs it: ``TrainConfig`` to ``TrainingArguments``
and the one method the stock Trainer needs changed (a reproducible length-grouped order)."""

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import Trainer, TrainingArguments

from model_training.batching import SeededLengthGroupedSampler, TokenizedDataset
from model_training.precision import DevicePlan
from model_training.profiles import TrainConfig

BEST_METRIC = "micro_f1"
# Checkpoints kept while training: the best one (by dev micro-F1) and the newest (to resume).
KEEP_CHECKPOINTS = 2


def launched_processes() -> int:
    """How many processes the launcher (torchrun, accelerate launch) started."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_arguments(
    config: TrainConfig, state_dir: Path, plan: DevicePlan, *, progress_bars: bool = False
) -> TrainingArguments:
    """Dev evaluation and a checkpoint every epoch, best weights by dev micro-F1 at the end,
    linear warm-up and decay, AdamW without decay on biases and LayerNorm (the Trainer's own)."""
    return TrainingArguments(
        output_dir=str(state_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # below 1: a share of the optimizer steps
        lr_scheduler_type="linear",
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs,
        seed=config.seed,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=KEEP_CHECKPOINTS,
        load_best_model_at_end=True,
        metric_for_best_model=BEST_METRIC,
        greater_is_better=True,
        restore_callback_states_from_checkpoint=True,
        logging_strategy="steps",
        logging_steps=config.log_every,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        use_cpu=plan.use_cpu,
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
        # Between CPU processes gloo (accelerate would take MPI where torch has it); NCCL on GPUs.
        ddp_backend="gloo" if plan.use_cpu and launched_processes() > 1 else None,
        dataloader_num_workers=0,
        disable_tqdm=not progress_bars,
    )


def positive_weights(labels: np.ndarray) -> torch.Tensor:
    """sqrt(negatives / positives) of each label (a label without positives gets 1)."""
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return torch.from_numpy(np.sqrt(np.maximum(ratio, 1.0))).float()


class WeightedBCE:
    """The Trainer's ``compute_loss_func``: BCE with a positive-class weight per label,
    normalised by the label entries of the whole accumulated (and distributed) batch."""

    def __init__(self, pos_weight: torch.Tensor) -> None:
        self.pos_weight = pos_weight

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs.logits.float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits,
            labels.float(),
            pos_weight=self.pos_weight.to(logits.device),
            reduction="sum",
        )
        return loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())


class EurovocTrainer(Trainer):
    """``Trainer`` whose length-grouped order is seeded per epoch, not drawn from the global RNG.

    The stock ``LengthGroupedSampler`` draws its permutation from the global torch RNG, whose
    state depends on everything drawn before (dropout, initialisation): a resumed run would see
    another order, and the processes of a distributed run would agree only by luck.
    """

    def _get_train_sampler(self, train_dataset=None) -> Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(
            dataset, TokenizedDataset
        ):
            return super()._get_train_sampler(train_dataset)
        return SeededLengthGroupedSampler(
            dataset.split.lengths,
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            seed=self.args.seed,
        )
