"""The Trainer callbacks' own logic on TrainerState/TrainerControl objects (no training)."""

import json

import pytest
import torch
from transformers import TrainerControl, TrainerState

from model_training import callbacks
from model_training.callbacks import (
    ResumePointsCallback,
    TimeBudgetCallback,
    TrainLogCallback,
    any_process,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", fake)
    return fake


def _args():
    return type("Args", (), {"device": torch.device("cpu")})()


def test_time_budget_counts_time_before_and_not_evaluations(clock):
    budget = TimeBudgetCallback(max_seconds=60, seconds_before=10)
    state, control = TrainerState(), TrainerControl()
    budget.on_train_begin(_args(), state, control)
    clock.now += 40
    budget.on_step_end(_args(), state, control)
    assert not control.should_training_stop and budget.elapsed() == 50
    budget.on_evaluate(_args(), state, control, metrics={"eval_runtime": 30.0})
    clock.now += 30  # the evaluation's time
    budget.on_step_end(_args(), state, control)
    assert not control.should_training_stop
    clock.now += 10
    budget.on_step_end(_args(), state, control)
    assert control.should_training_stop and budget.stopped
    saved = budget.state()
    assert saved["args"] == {"max_seconds": 60, "seconds_before": 60.0}
    restored = TimeBudgetCallback(**saved["args"])
    assert restored.elapsed() == 60.0  # a resumed run keeps counting from here


def test_no_budget_never_stops(clock):
    budget, control = TimeBudgetCallback(), TrainerControl()
    budget.on_train_begin(_args(), TrainerState(), control)
    clock.now += 1e9
    budget.on_step_end(_args(), TrainerState(), control)
    assert not control.should_training_stop


def test_one_process_decides_alone():
    assert any_process(True, torch.device("cpu")) and not any_process(False, torch.device("cpu"))


def test_resume_points_and_a_deliberate_stop():
    points = ResumePointsCallback(every=3, stop_after=7)
    state = TrainerState()
    for step in range(1, 7):
        state.global_step, control = step, TrainerControl()
        points.on_step_end(_args(), state, control)
        assert control.should_save == (step % 3 == 0) and not control.should_training_stop
    state.global_step, state.epoch, control = 7, 1.75, TrainerControl()
    points.on_step_end(_args(), state, control)
    assert control.should_save and control.should_training_stop and points.interrupted
    control.should_evaluate = True  # what the default flow asks at the end of the epoch
    points.on_epoch_end(_args(), state, control)
    assert not control.should_evaluate and not control.should_save
    state.epoch, control.should_evaluate = 2.0, True  # stopped exactly at an epoch's end
    points.on_epoch_end(_args(), state, control)
    assert control.should_evaluate


def test_train_log_has_one_line_per_evaluation_with_the_mean_loss(tmp_path):
    path = tmp_path / "train_log.jsonl"
    log = TrainLogCallback(path, train_seconds=lambda: 12.5)
    state, control = TrainerState(), TrainerControl()
    log.on_train_begin(_args(), state, control)
    for step, loss in ((2, 1.0), (3, 0.5)):  # two steps at 1.0, one at 0.5
        state.global_step = step
        log.on_log(_args(), state, control, logs={"loss": loss, "learning_rate": 1e-4})
    log.on_epoch_end(_args(), state, control)
    assert control.should_log
    state.epoch = 1.0
    log.on_evaluate(
        _args(), state, control, metrics={"eval_micro_f1": 0.5, "eval_runtime": 2.0, "epoch": 1}
    )
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert line["event"] == "eval" and line["epoch"] == 1.0 and line["step"] == 3
    assert line["train_loss"] == pytest.approx(2.5 / 3) and line["train_seconds"] == 12.5
    assert line["micro_f1"] == 0.5 and "epoch" in line and "eval_micro_f1" not in line
    replica = TrainLogCallback(tmp_path / "other.jsonl", train_seconds=lambda: 0.0)
    state.is_world_process_zero = False
    replica.on_evaluate(_args(), state, control, metrics={"eval_micro_f1": 0.5})
    assert not (tmp_path / "other.jsonl").exists()
