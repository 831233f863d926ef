"""Trainer callbacks for what the Trainer does not do itself: a time budget every process obeys at
the same step, resume points every N steps (and a deliberate stop), and ``train_log.jsonl``."""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import torch
from transformers import (
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_callback import ExportableState

logger = logging.getLogger(__name__)

EVAL_PREFIX = "eval_"


def any_process(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any process of a distributed run (a collective call: every
    process must make it at the same point); just ``flag`` in a single process."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    distributed.all_reduce(value, op=distributed.ReduceOp.MAX)
    return bool(value.item())


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Stop training once it has used ``max_seconds`` (time before ``train()``, such as
    tokenization, included; dev evaluations not). After each optimizer step the processes agree
    (a max all-reduce), so all of them stop at the same step; the epoch-end evaluation and
    checkpoint then run as usual. The seconds used survive ``--resume`` (stateful callback)."""

    def __init__(self, max_seconds: float | None = None, seconds_before: float = 0.0) -> None:
        self.max_seconds = max_seconds
        self.seconds_before = seconds_before
        self.stopped = False
        self._segment_start: float | None = None
        self._eval_seconds = 0.0

    def elapsed(self) -> float:
        if self._segment_start is None:
            return self.seconds_before
        return self.seconds_before + time.monotonic() - self._segment_start - self._eval_seconds

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._segment_start = time.monotonic()
        self._eval_seconds = 0.0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        self._eval_seconds += float((metrics or {}).get(f"{EVAL_PREFIX}runtime", 0.0))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if self.max_seconds is None:
            return
        if any_process(self.elapsed() >= self.max_seconds, args.device):
            if not self.stopped:
                logger.info("time budget of %.0f s used: stopping at step %d",
                            self.max_seconds, state.global_step)
            self.stopped = True
            control.should_training_stop = True

    def state(self) -> dict[str, Any]:
        return {
            "args": {"max_seconds": self.max_seconds, "seconds_before": self.elapsed()},
            "attributes": {"stopped": self.stopped},
        }


class ResumePointsCallback(TrainerCallback):
    """Save a resumable checkpoint every ``every`` optimizer steps, and with ``stop_after`` save
    one and stop there (an interruption on purpose; ``--resume`` continues from it)."""

    def __init__(self, every: int, stop_after: int | None = None) -> None:
        self.every = every
        self.stop_after = stop_after
        self.interrupted = False

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if state.global_step % self.every == 0:
            control.should_save = True
        if self.stop_after is not None and state.global_step >= self.stop_after:
            self.interrupted = True
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        # Stopped inside an epoch: no evaluation of half an epoch; the resumed run evaluates it.
        if self.interrupted and not float(state.epoch or 0).is_integer():
            control.should_evaluate = False
            control.should_save = False


class TrainLogCallback(TrainerCallback):
    """Every dev evaluation as one JSON line of ``path`` (the main process writes it), with the
    mean training loss since the previous one; progress lines to the log."""

    def __init__(self, path: Path, train_seconds: Callable[[], float]) -> None:
        self.path = Path(path)
        self.train_seconds = train_seconds
        self._losses: list[tuple[float, int]] = []
        self._last_step = 0

    def on_train_begin(self, args, state: TrainerState, control, **kwargs) -> None:
        self._last_step = state.global_step

    def on_epoch_end(self, args, state, control: TrainerControl, **kwargs) -> None:
        control.should_log = True  # the loss of the epoch's last steps, before its evaluation

    def on_log(self, args, state: TrainerState, control, logs=None, **kwargs) -> None:
        logs = logs or {}
        if "loss" not in logs:
            return
        steps = state.global_step - self._last_step
        self._last_step = state.global_step
        self._losses.append((float(logs["loss"]), steps))
        if state.is_world_process_zero:
            logger.info(
                "step %d/%d: loss %.4f, lr %.2e, %.0f s",
                state.global_step,
                state.max_steps,
                logs["loss"],
                logs.get("learning_rate", float("nan")),
                self.train_seconds(),
            )

    def on_evaluate(self, args, state: TrainerState, control, metrics=None, **kwargs) -> None:
        steps = sum(count for _, count in self._losses)
        train_loss = sum(loss * count for loss, count in self._losses) / steps if steps else None
        self._losses = []
        if not state.is_world_process_zero:
            return
        dev = {
            key.removeprefix(EVAL_PREFIX): value
            for key, value in (metrics or {}).items()
            if key.startswith(EVAL_PREFIX)
        }
        logger.info(
            "epoch %.2f: dev micro-F1 %.4f, macro-F1 %.4f at 0.5",
            state.epoch,
            dev.get("micro_f1", float("nan")),
            dev.get("macro_f1", float("nan")),
        )
        write_log_line(
            self.path,
            {
                "event": "eval",
                "split": "dev",
                "thresholds": "0.5",
                "epoch": state.epoch,
                "step": state.global_step,
                "train_loss": train_loss,
                "train_seconds": self.train_seconds(),
                **dev,
            },
        )


def write_log_line(path: Path, event: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"time": datetime.now(UTC).isoformat(), **event}
    with path.open("ab") as handle:
        handle.write(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
