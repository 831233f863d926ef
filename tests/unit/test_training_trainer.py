"""A tiny random BERT trains, exports, reloads through the worker's loader, and resumes exactly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model_training.errors import DataError
from model_training.evaluation import score
from model_training.export import export_half_precision
from model_training.profiles import PROFILES, TrainConfig, build_config
from model_training.trainer import LOG_FILE, STATE_DIR, Trainer
from schemas.manifest import MANIFEST_FILENAME
from tests.unit.test_training_helpers import (
    LABEL_NAMES,
    make_base_model,
    make_data_dir,
    tiny_settings,
)
from worker.checkpoint import load_checkpoint

# Enough optimizer steps for the tiny model to learn visibly (about a second on one core).
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
    return TrainConfig(**tiny_settings(base, data, epochs=EPOCHS, patience=EPOCHS, **overrides))


def _log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(workspace, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "ckpt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EUROVOC_CACHE", str(output.parent / "cache"))
        result = Trainer(_config(workspace), output).run()
    return result


def test_loss_falls_and_every_epoch_is_logged(trained):
    assert trained.status == "complete"
    evals = [row for row in _log(trained.output_dir) if row["event"] == "eval"]
    assert [row["epoch"] for row in evals] == list(range(1, EPOCHS + 1))
    losses = [row["train_loss"] for row in evals]
    assert losses[-1] < losses[0] - 0.05
    assert max(row["micro_f1"] for row in evals) > evals[0]["micro_f1"]
    assert (
        trained.progress.best_epoch
        == max(range(len(evals)), key=lambda i: evals[i]["micro_f1"]) + 1
    )


def test_checkpoint_is_self_describing(trained):
    output = trained.output_dir
    assert not (output / STATE_DIR).exists()
    manifest = json.loads((output / MANIFEST_FILENAME).read_text())
    assert [label["name"] for label in manifest["labels"]] == LABEL_NAMES
    assert set(manifest["metrics"]) == {"dev", "dev@0.5", "test", "test@0.5"}
    assert manifest["training_args"]["max_length"] == 64
    assert manifest["training_args"]["stopped_by"] == "epochs"
    assert manifest["data_fingerprint"].startswith("train=train.jsonl.gz:sha256:")
    card = (output / "README.md").read_text()
    assert "| test | tuned |" in card and "| dev | 0.5 |" in card
    assert (
        trained.manifest.metrics["dev"]["micro_f1"]
        >= trained.manifest.metrics["dev@0.5"]["micro_f1"]
    )


def test_export_load_evaluate_reproduces_training_metrics(trained, workspace):
    data, _ = workspace
    for split in ("dev", "test"):
        metrics = score(trained.output_dir, str(data), split=split, batch_size=16).metrics()
        for key, name in ((split, "tuned"), (f"{split}@0.5", "0.5")):
            expected = trained.manifest.metrics[key]
            assert metrics[name] == pytest.approx(expected, abs=1e-6, nan_ok=True)


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(trained, workspace, tmp_path):
    output = tmp_path / "resumed"
    config = _config(workspace, grad_accum=2, save_state_every=3)
    reference = Trainer(config, tmp_path / "reference").run()
    stopped = Trainer(config.model_copy(update={"stop_after_steps": 7}), output).run()
    assert stopped.status == "interrupted" and stopped.progress.step == 7
    assert (output / STATE_DIR / "state.pt").is_file()
    with pytest.raises(DataError, match="interrupted run"):
        Trainer(config, output).run()
    resumed_config = Trainer.saved_config(output).model_copy(update={"stop_after_steps": None})
    resumed = Trainer(resumed_config, output).run(resume=True)
    assert resumed.status == "complete"
    assert resumed.progress.step == reference.progress.step
    for key, expected in reference.manifest.metrics.items():
        assert resumed.manifest.metrics[key] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    reference_weights = load_checkpoint(tmp_path / "reference").model.state_dict()
    resumed_weights = load_checkpoint(output).model.state_dict()
    for name, tensor in reference_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=1e-6, rtol=0)
    assert [row["epoch"] for row in _log(output) if row["event"] == "eval"] == list(
        range(1, EPOCHS + 1)
    )


def test_time_budget_and_nothing_to_resume(workspace, tmp_path):
    result = Trainer(_config(workspace, max_train_seconds=1e-6), tmp_path / "out").run()
    assert result.progress.stopped_by == "time_budget" and result.progress.step == 1
    with pytest.raises(DataError, match="nothing to resume"):
        Trainer.saved_config(tmp_path / "elsewhere")


def test_half_precision_export_stays_close(trained, workspace, tmp_path):
    data, _ = workspace
    manifest = export_half_precision(trained.output_dir, tmp_path / "fp16")
    assert manifest.dtype == "float16"
    full_size = (trained.output_dir / "model.safetensors").stat().st_size
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * full_size
    full = score(trained.output_dir, str(data)).probabilities
    half = score(tmp_path / "fp16", str(data)).probabilities
    assert np.abs(full - half).max() < 0.01


def test_profiles_and_bad_settings():
    quick = build_config("cpu-quick", {})
    assert (
        quick.base_model == "minilm" and quick.max_length <= 256 and quick.max_train_seconds <= 600
    )
    assert build_config("gpu", {"epochs": 2}).epochs == 2
    assert build_config("gpu", {}).base_model == "mpnet" and PROFILES["gpu"]["max_length"] == 512
    with pytest.raises(ValueError, match="unknown profile"):
        build_config("tpu", {})
    with pytest.raises(ValueError):
        TrainConfig(batch_size=0)
