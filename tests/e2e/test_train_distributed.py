"""Data-parallel training as a user launches it: ``torchrun`` with two CPU processes (gloo) on a
tiny model; one valid checkpoint comes out, exported by the main process alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_training.trainer import LOG_FILE, STATE_DIR
from tests.unit.training.test_helpers import make_base_model, make_data_dir
from worker.inference.checkpoint import load_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).parent / "torchrun"
EPOCHS = 3


def torchrun_train(tmp_path: Path, output: Path, *flags: str) -> subprocess.CompletedProcess:
    data, base = make_data_dir(tmp_path / "data"), make_base_model(tmp_path / "base")
    env = {
        **os.environ,
        "EUROVOC_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        str(TORCHRUN), "--standalone", "--nproc_per_node", "2",
        "-m", "model_training.cli", "train",
        "--base-model", str(base), "--data", str(data), "--output", str(output),
        "--max-length", "64", "--batch-size", "4", "--learning-rate", "5e-3",
        "--warmup-ratio", "0", "--epochs", str(EPOCHS), "--threads", "1",
        "--device", "cpu", "--precision", "fp32", "--min-positives", "5", *flags,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]


def test_two_processes_train_one_checkpoint(tmp_path):
    output = tmp_path / "model"
    torchrun_train(tmp_path, output)
    checkpoint = load_checkpoint(output)  # the worker's loader: weights match the manifest
    manifest = checkpoint.manifest
    args = manifest.training_args
    assert args["processes"] == 2 and args["stopped_by"] == "epochs"
    # 64 documents, 4 per process and step: 8 steps an epoch.
    assert args["steps"] == 8 * EPOCHS
    assert set(manifest.metrics) == {"dev", "dev@0.5", "test", "test@0.5"}
    assert manifest.metrics["dev"]["documents"] == 48  # evaluation gathered both halves
    assert sorted(path.name for path in output.glob("*.safetensors")) == ["model.safetensors"]
    assert not (output / STATE_DIR).exists()
    events = _log(output)
    assert [row["epoch"] for row in events if row["event"] == "eval"] == [1.0, 2.0, 3.0]
    assert len([row for row in events if row["event"] == "final"]) == 4  # the main process only
    cache = sorted(path.name for path in (tmp_path / "cache" / "tokenized").iterdir())
    # train and dev (the Trainer's); test is scored by the worker's engine, which tokenizes itself
    assert len(cache) == 2 and all(".tmp." not in name for name in cache)


def test_the_time_budget_stops_both_processes_at_the_same_step(tmp_path):
    output = tmp_path / "model"
    torchrun_train(tmp_path, output, "--max-train-seconds", "0.000001")
    args = load_checkpoint(output).manifest.training_args
    # A process that went on alone would wait for the other's gradients until the timeout.
    assert args["stopped_by"] == "time_budget" and args["steps"] == 1
