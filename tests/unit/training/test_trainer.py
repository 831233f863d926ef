"""A tiny random BERT trains on the Trainer, exports, reloads through the worker's loader, and
resumes exactly."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model_training.errors import DataError
from model_training.evaluation import score
from model_training.export import export_half_precision
from model_training.hf_trainer import WeightedBCE, positive_weights
from model_training.profiles import TrainConfig
from model_training.trainer import LOG_FILE, STATE_DIR, run_training, saved_config
from schemas.manifest import MANIFEST_FILENAME
from tests.unit.training.test_helpers import (
    LABEL_NAMES,
    make_base_model,
    make_data_dir,
    tiny_settings,
)
from worker.inference.checkpoint import load_checkpoint
from worker.inference.cpu_resources import cpu_computes_bf16
from worker.inference.engine_settings import EngineSettings

# Enough optimizer steps for the tiny model to learn visibly (a few seconds on one core).
EPOCHS = 8


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("training")
    return make_data_dir(root / "data"), make_base_model(root / "base")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EUROVOC_CACHE", str(tmp_path / "cache"))


def _config(workspace, **overrides) -> TrainConfig:
    data, base = workspace
    settings = {"epochs": EPOCHS, "patience": EPOCHS, **overrides}
    return TrainConfig(**tiny_settings(base, data, **settings))


def _engine(model: Path, **overrides) -> EngineSettings:
    """The worker's engine settings (dtype auto, as the end of training scores), no warm-up."""
    return EngineSettings(model=model, warmup=False, torch_threads=1, **overrides)


def _log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(workspace, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "ckpt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EUROVOC_CACHE", str(output.parent / "cache"))
        return run_training(_config(workspace), output)


def test_loss_falls_and_the_best_epoch_is_kept(trained):
    assert trained.status == "complete"
    evals = [row for row in _log(trained.output_dir) if row["event"] == "eval"]
    assert [row["epoch"] for row in evals] == [float(epoch) for epoch in range(1, EPOCHS + 1)]
    losses = [row["train_loss"] for row in evals]
    assert losses[-1] < losses[0] - 0.05
    assert max(row["micro_f1"] for row in evals) > evals[0]["micro_f1"]
    best = max(evals, key=lambda row: row["micro_f1"])
    assert trained.summary.best_epoch == best["epoch"]
    assert trained.summary.stopped_by == "epochs" and trained.summary.steps == EPOCHS * 8
    # load_best_model_at_end: the exported weights are the best epoch's.
    assert trained.manifest.metrics["dev@0.5"]["micro_f1"] == pytest.approx(
        best["micro_f1"], abs=1e-6
    )


def test_checkpoint_is_self_describing(trained):
    output = trained.output_dir
    assert not (output / STATE_DIR).exists()
    manifest = json.loads((output / MANIFEST_FILENAME).read_text())
    assert [label["name"] for label in manifest["labels"]] == LABEL_NAMES
    assert set(manifest["metrics"]) == {"dev", "dev@0.5", "test", "test@0.5"}
    args = manifest["training_args"]
    assert args["max_length"] == 64 and args["stopped_by"] == "epochs"
    assert args["processes"] == 1 and args["precision"] in ("fp32", "bf16")
    assert args["samples_per_second"] > 0 and args["tokens_per_second"] > 0
    assert manifest["data_fingerprint"].startswith("train=sha256:")
    fingerprints = manifest["data_fingerprints"]
    assert set(fingerprints) == {"train", "dev", "test"}
    assert manifest["thresholds"]["tuned_on"] == fingerprints["dev"] != fingerprints["test"]
    # scored by the worker's engine with its default settings, recorded next to the thresholds
    inference = manifest["thresholds"]["inference"]
    assert inference["device"] == "cpu" and inference["long_documents"] == "truncate"
    assert inference["dtype"] == ("bfloat16" if cpu_computes_bf16() else "float32")
    assert inference["max_length"] == manifest["max_length"]
    card = (output / "README.md").read_text()
    assert "| test | tuned |" in card and "| dev | 0.5 |" in card
    assert manifest["metrics"]["dev"]["micro_f1"] >= manifest["metrics"]["dev@0.5"]["micro_f1"]
    finals = [row for row in _log(output) if row["event"] == "final"]
    assert {(row["split"], row["thresholds"]) for row in finals} == {
        ("dev", "0.5"), ("dev", "tuned"), ("test", "0.5"), ("test", "tuned")
    }


def test_export_load_evaluate_reproduces_training_metrics(trained, workspace):
    data, _ = workspace
    for split in ("dev", "test"):
        metrics = score(_engine(trained.output_dir), str(data), split=split).metrics()
        for key, name in ((split, "tuned"), (f"{split}@0.5", "0.5")):
            expected = trained.manifest.metrics[key]
            assert metrics[name] == pytest.approx(expected, abs=1e-6, nan_ok=True)


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(workspace, tmp_path):
    output = tmp_path / "resumed"
    config = _config(workspace, grad_accum=2, save_state_every=3)
    reference = run_training(config, tmp_path / "reference")
    stopped = run_training(config.model_copy(update={"stop_after_steps": 7}), output)
    assert stopped.status == "interrupted" and stopped.summary.steps == 7
    assert (output / STATE_DIR / "checkpoint-7" / "trainer_state.json").is_file()
    assert all(row["epoch"] <= 3 for row in _log(output))  # no evaluation of half an epoch
    with pytest.raises(DataError, match="interrupted run"):
        run_training(config, output)
    resumed_config = saved_config(output).model_copy(update={"stop_after_steps": None})
    assert resumed_config == config
    resumed = run_training(resumed_config, output, resume=True)
    assert resumed.status == "complete"
    assert resumed.summary.steps == reference.summary.steps
    for key, expected in reference.manifest.metrics.items():
        assert resumed.manifest.metrics[key] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    reference_weights = load_checkpoint(tmp_path / "reference").model.state_dict()
    resumed_weights = load_checkpoint(output).model.state_dict()
    for name, tensor in reference_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=1e-6, rtol=0)
    assert [row["epoch"] for row in _log(output) if row["event"] == "eval"] == [
        float(epoch) for epoch in range(1, EPOCHS + 1)
    ]


def test_time_budget_stops_at_a_step_and_still_exports(workspace, tmp_path):
    """(In bf16 autocast where this CPU computes bf16 natively.)"""
    config = _config(workspace, max_train_seconds=1e-6, precision="auto")
    result = run_training(config, tmp_path / "out")
    assert result.summary.stopped_by == "time_budget" and result.summary.steps == 1
    assert result.status == "complete" and (tmp_path / "out" / MANIFEST_FILENAME).is_file()
    assert result.manifest.training_args["stopped_by"] == "time_budget"
    with pytest.raises(DataError, match="nothing to resume"):
        saved_config(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="nothing to resume"):
        run_training(_config(workspace), tmp_path / "elsewhere", resume=True)


def test_early_stopping_ends_before_the_epochs(workspace, tmp_path):
    result = run_training(
        _config(workspace, learning_rate=1e-9, patience=1, epochs=EPOCHS), tmp_path / "early"
    )
    assert result.summary.stopped_by == "early_stopping"
    assert result.summary.epochs < EPOCHS


def test_half_precision_export_stays_close(trained, workspace, tmp_path):
    data, _ = workspace
    manifest = export_half_precision(trained.output_dir, tmp_path / "fp16")
    assert manifest.dtype == "float16"
    full_size = (trained.output_dir / "model.safetensors").stat().st_size
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * full_size
    full = score(_engine(trained.output_dir, dtype="float32"), str(data)).probabilities
    half = score(_engine(tmp_path / "fp16", dtype="float16"), str(data)).probabilities
    assert np.abs(full - half).max() < 0.01


def test_positive_class_weights_and_their_loss(workspace, tmp_path):
    labels = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    assert positive_weights(labels).tolist() == pytest.approx([1.0, 3**0.5, 1.0])
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -3.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    outputs = SimpleNamespace(logits=logits)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert WeightedBCE(torch.ones(3))(outputs, targets, num_items_in_batch=6) == pytest.approx(
        float(plain)
    )
    assert WeightedBCE(torch.full((3,), 2.0))(outputs, targets) > plain
    result = run_training(_config(workspace, pos_weight="sqrt", epochs=2), tmp_path / "weighted")
    assert result.status == "complete" and result.manifest.training_args["pos_weight"] == "sqrt"
