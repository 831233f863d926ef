"""``bench/inference.py --quick --json`` as a user runs it, on a tiny model and a tiny data set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.tiny_checkpoint import make_tiny_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WORDS = "council regulation fish milk wine steel trade customs tax bank court water".split()
FIELDS = {"name", "docs_per_s", "tokens_per_s", "padding_efficiency", "batch_latency_ms",
          "peak_rss_mb", "micro_f1", "documents", "speedup_vs_naive"}


def write_documents(path: Path, n: int) -> None:
    lines = []
    for index in range(n):
        words = 8 + (index * 37) % 300  # some fit 128 tokens, some are cut
        text = " ".join(WORDS[(index + 3 * j) % len(WORDS)] for j in range(words))
        lines.append(orjson.dumps({"celex_id": f"doc-{index}", "title": f"regulation {index}",
                                   "text": text, "labels": [index % 21, (index * 5) % 21]}))
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_quick_json_has_every_row_and_writes_results(tmp_path):
    model = tmp_path / "model"
    make_tiny_checkpoint(model, max_length=128)
    data = tmp_path / "docs.jsonl"
    write_documents(data, 24)
    output = tmp_path / "results" / "inference.json"
    env = os.environ | {"TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "bench/inference.py", "--quick", "--json", "--n", "24", "--threads", "1",
         "--chunk-aggregations", "first-max",
         "--model", str(model), "--data", str(data), "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(output.read_text()) == result
    assert output.with_suffix(".png").stat().st_size > 10_000
    rows = {row["name"]: row for row in result["rows"]}
    assert {"naive", "notebook", "engine-fp32", "engine-bf16"} <= set(rows)
    measured = [row for row in rows.values() if "skipped" not in row]
    assert len(measured) >= 6
    for row in measured:
        assert FIELDS <= set(row), row["name"]
        assert row["documents"] == 24 and row["docs_per_s"] > 0 and row["tokens_per_s"] > 0
        assert 0 < row["padding_efficiency"] <= 1 and 0 <= row["micro_f1"] <= 1
        assert row["batch_latency_ms"]["p50"] <= row["batch_latency_ms"]["p99"]
    naive, notebook = rows["naive"], rows["notebook"]
    assert naive["padding_efficiency"] == 1.0 and naive["speedup_vs_naive"] == 1.0
    assert notebook["padding_efficiency"] < 1.0  # fixed padding to 128 tokens
    # fp32 rows score the same model the same way: identical decisions, identical F1
    assert rows["engine-fp32"]["micro_f1"] == pytest.approx(naive["micro_f1"], abs=1e-6)
    assert rows["engine-fp32"]["micro_f1"] == pytest.approx(notebook["micro_f1"], abs=1e-6)
    chunked = [row for row in measured if row["long_documents"] == "chunk"]
    assert chunked and all(row["sequences_per_document"] > 1 for row in chunked)
    mixed = next(row for row in measured if row["name"].startswith("mixed-engine"))
    assert mixed["padding_efficiency"] > rows["mixed-notebook"]["padding_efficiency"]
    assert result["machine"]["cpus_usable"] >= 1 and result["comparison"]["best_engine_row"]


def test_random_checkpoint_of_a_given_size_loads_like_a_trained_one(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    from random_checkpoint import write_random_checkpoint

    from worker.inference.checkpoint import load_checkpoint
    from worker.inference.model_runner import ModelRunner

    make_tiny_checkpoint(tmp_path / "trained", max_length=64)
    path = write_random_checkpoint(tmp_path / "random", "tiny", 96, tmp_path / "trained")
    checkpoint = load_checkpoint(path)
    assert checkpoint.manifest.max_length == 96 and len(checkpoint.manifest.labels) == 21
    assert checkpoint.model.config.num_hidden_layers == 2
    scores = ModelRunner(checkpoint).score([[2, 10, 11, 3]])
    assert scores.shape == (1, 21)
