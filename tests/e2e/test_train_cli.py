"""``eurovoc-train`` as a user runs it: train, evaluate, tune, predict, baseline, errors."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from model_training.trainer import LOG_FILE, STATE_DIR
from tests.e2e.cli_runner import run_cli
from tests.unit.training.test_helpers import (
    LABEL_NAMES,
    make_base_model,
    make_data_dir,
    write_jsonl,
)

pytestmark = pytest.mark.e2e


def train_cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = run_cli("eurovoc-train", *args, env=env, timeout=240)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    return {
        **os.environ,
        "EUROVOC_CACHE": str(cache),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data, base = make_data_dir(root / "data"), make_base_model(root / "base")
    output = root / "model"
    train_cli(
        "train",
        "--base-model",
        str(base),
        "--data",
        str(data),
        "--output",
        str(output),
        "--max-length",
        "64",
        "--batch-size",
        "8",
        "--learning-rate",
        "5e-3",
        "--warmup-ratio",
        "0",
        "--epochs",
        "4",
        "--threads",
        "1",
        "--min-positives",
        "5",
        "--no-group-by-length",
        "--name",
        "tiny-cli",
        "--version",
        "1",
        env=env,
    )
    return data, output


def test_train_writes_a_checkpoint_the_worker_can_load(trained):
    _, output = trained
    manifest = json.loads((output / "eurovoc.json").read_text())
    assert manifest["name"] == "tiny-cli" and manifest["version"] == "1"
    assert manifest["training_args"]["group_by_length"] is False
    assert {"model.safetensors", "tokenizer.json", "README.md", "train_log.jsonl"} <= {
        p.name for p in output.iterdir()
    }


def test_evaluate_json_and_report(trained, env, tmp_path):
    data, output = trained
    result = train_cli(
        "evaluate",
        "--model",
        str(output),
        "--data",
        str(data / "test.jsonl"),
        "--json",
        "--report",
        str(tmp_path / "report"),
        env=env,
    )
    summary = json.loads(result.stdout)
    manifest = json.loads((output / "eurovoc.json").read_text())
    assert summary["documents"] == 48
    # scored by the worker's engine with the settings training tuned the thresholds with
    assert summary["inference"] == manifest["thresholds"]["inference"]
    assert summary["metrics"]["tuned"]["micro_f1"] == pytest.approx(
        manifest["metrics"]["test"]["micro_f1"], abs=1e-6
    )
    assert summary["metrics"]["0.5"]["roc_auc_macro"] == pytest.approx(
        manifest["metrics"]["test@0.5"]["roc_auc_macro"], abs=1e-6
    )
    report = tmp_path / "report"
    assert (report / "per_label_f1.png").read_bytes()[:4] == b"\x89PNG"
    assert (report / "per_label.csv").read_text().splitlines()[0].startswith("id,name,support")
    assert len(json.loads((report / "metrics.json").read_text())["per_label"]) == len(LABEL_NAMES)


def test_predict_is_the_workers_classify_command(trained, env, tmp_path):
    _, output = trained
    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"celex_id": "32010R0001", "text": "milk and wine for the market"},
            {"id": "x-2", "text": "bank tax aid finance"},
        ],
    )
    common = ("--model", str(output), "--no-warmup", "--no-progress", str(docs), "-o", "-")
    stdout = train_cli("predict", *common, env=env).stdout
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [row["id"] for row in rows] == ["32010R0001", "x-2"]
    assert list(rows[0]["scores"]) == LABEL_NAMES
    for row in rows:
        scores = [label["score"] for label in row["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert all(row["scores"][label["name"]] == label["score"] for label in row["labels"])
    # one "label a file" command: the same flags, the same output as eurovoc-worker classify
    classified = run_cli("eurovoc-worker", "classify", *common, env=env, timeout=240)
    assert classified.returncode == 0, classified.stderr[-3000:]
    same = [json.loads(line) for line in classified.stdout.splitlines()]
    for row in (*rows, *same):
        row.pop("produced_at")
    assert rows == same
    help_text = train_cli("predict", "--help", env=env).stdout
    assert "--long-documents" in help_text and "--max-in-flight" in help_text


def test_tune_thresholds_and_baseline(trained, env, tmp_path):
    data, trained_model = trained
    output = Path(shutil.copytree(trained_model, tmp_path / "model"))
    result = train_cli(
        "tune-thresholds",
        "--model",
        str(output),
        "--data",
        str(data),
        "--json",
        "--min-positives",
        "5",
        "--at-least-one",
        "on",
        env=env,
    )
    summary = json.loads(result.stdout)
    assert summary["written"] and summary["thresholds"]["at_least_one"] is True
    assert summary["micro_f1"]["tuned"] >= summary["micro_f1"]["0.5"]
    assert summary["metrics_refreshed"] == ["dev", "test"]
    after = json.loads((output / "eurovoc.json").read_text())
    assert after["thresholds"] == summary["thresholds"]
    assert after["thresholds"]["tuned_on"] == after["data_fingerprints"]["dev"]
    evaluated = json.loads(
        train_cli("evaluate", "--model", str(output), "--data", str(data), "--json", env=env).stdout
    )
    assert evaluated["metrics"]["tuned"]["micro_f1"] == pytest.approx(
        after["metrics"]["test"]["micro_f1"], abs=1e-6
    )
    # tuned and evaluated with the same (default) engine settings, recorded beside the thresholds
    assert after["thresholds"]["inference"] == evaluated["inference"]
    baseline = train_cli(
        "baseline",
        "--data",
        str(data),
        "--json",
        "--max-features",
        "500",
        "--output",
        str(tmp_path / "baseline.json"),
        env=env,
    )
    payload = json.loads(baseline.stdout)
    assert payload["model"] == "tfidf-logreg"
    assert set(payload["metrics"]) == {"0.5", "tuned"}
    assert payload["metrics"]["tuned"]["micro_f1"] > 0.5  # the tiny data set is easy for words
    assert json.loads((tmp_path / "baseline.json").read_text()) == payload


def test_thresholds_record_the_worker_settings_they_were_tuned_with(trained, env):
    data, output = trained
    before = (output / "eurovoc.json").read_text()
    chunked = train_cli(
        "tune-thresholds", "--model", str(output), "--data", str(data), "--json", "--dry-run",
        "--long-documents", "chunk", "--max-length", "16", "--chunk-stride", "4",
        "--max-chunks", "3", "--dtype", "float32", env=env,
    )  # fmt: skip
    inference = json.loads(chunked.stdout)["thresholds"]["inference"]
    assert (inference["long_documents"], inference["max_length"], inference["dtype"]) == (
        "chunk", 16, "float32"
    )
    assert (inference["max_chunks"], inference["chunk_aggregation"]) == (3, "first-max")
    assert (output / "eurovoc.json").read_text() == before  # a dry run writes nothing


def test_bad_inputs_exit_2_with_one_clear_line(trained, env, tmp_path):
    data, output = trained
    missing = train_cli(
        "evaluate",
        "--model",
        str(output),
        "--data",
        str(tmp_path / "nope.jsonl"),
        env=env,
        check=False,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "text": "t", "labels": [7]}])
    unknown = train_cli(
        "evaluate", "--model", str(output), "--data", str(bad), env=env, check=False
    )
    assert unknown.returncode == 2 and "unknown label id 7" in unknown.stderr


def test_thresholds_are_never_tuned_on_the_test_split(trained, env, tmp_path):
    data, output = trained
    before = (output / "eurovoc.json").read_text()
    renamed = tmp_path / "held_out.jsonl"
    renamed.write_bytes((data / "test.jsonl").read_bytes())
    for args in (("--data", str(data), "--split", "test"), ("--data", str(renamed))):
        refused = train_cli("tune-thresholds", "--model", str(output), *args, env=env, check=False)
        assert refused.returncode == 2 and "refusing to tune thresholds" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert (output / "eurovoc.json").read_text() == before


def test_export_half_keeps_the_dev_metrics_beside_its_check(trained, env, tmp_path):
    data, output = trained
    result = train_cli(
        "export-half",
        "--model", str(output),
        "--output", str(tmp_path / "half"),
        "--data", str(data),
        "--max-change", "1",
        env=env,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    source = json.loads((output / "eurovoc.json").read_text())["metrics"]
    half = json.loads((tmp_path / "half" / "eurovoc.json").read_text())["metrics"]
    assert half["dev"] == source["dev"] and half["dev@0.5"] == source["dev@0.5"]
    assert half["test"]["micro_f1"] == pytest.approx(summary["micro_f1"]["half"])
    assert half["half_precision@test"]["micro_f1_change"] == pytest.approx(
        summary["micro_f1"]["change"]
    )
    assert "Half-precision check on test" in (tmp_path / "half" / "README.md").read_text()


@pytest.mark.slow
def test_interrupted_run_resumes_with_its_own_settings(env, tmp_path):
    """Settings from ``EUROVOC_TRAIN_*`` (never the worker's ``EUROVOC_*``), an interruption, then
    ``--resume`` with nothing but the output directory."""
    data, base = make_data_dir(tmp_path / "data"), make_base_model(tmp_path / "base")
    output = tmp_path / "model"
    settings = {
        "EUROVOC_TRAIN_BASE_MODEL": str(base),
        "EUROVOC_TRAIN_DATA": str(data),
        "EUROVOC_TRAIN_MAX_LENGTH": "64",
        "EUROVOC_TRAIN_BATCH_SIZE": "8",
        "EUROVOC_TRAIN_EPOCHS": "2",
        "EUROVOC_TRAIN_THREADS": "1",
        "EUROVOC_TRAIN_MIN_POSITIVES": "5",
        "EUROVOC_TRAIN_SAVE_STATE_EVERY": "5",
        "EUROVOC_MAX_LENGTH": "16",  # the worker's setting: must not reach training
    }
    first = train_cli(
        "train", "--output", str(output), "--stop-after-steps", "5", env={**env, **settings}
    )
    assert f"--output {output} --resume" in first.stderr
    assert (output / STATE_DIR / "checkpoint-5").is_dir() and not (output / "eurovoc.json").exists()
    train_cli("train", "--output", str(output), "--resume", env=env)  # no settings given again
    args = json.loads((output / "eurovoc.json").read_text())["training_args"]
    assert args["max_length"] == 64 and args["epochs"] == 2 and args["stopped_by"] == "epochs"
    assert args["steps"] == 2 * 64 // 8
    log = [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]
    assert [row["epoch"] for row in log if row["event"] == "eval"] == [1.0, 2.0]
    assert not (output / STATE_DIR).exists()
