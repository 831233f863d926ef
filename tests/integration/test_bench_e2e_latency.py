"""``bench/e2e_latency.py`` in miniature: the real worker, the real broker, a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.tiny_checkpoint import make_tiny_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_open_loop_phases_latency_lag_and_throughput(tmp_path, kafka_bootstrap):
    model = tmp_path / "model"
    make_tiny_checkpoint(model, max_length=64)
    data = tmp_path / "docs.jsonl"
    data.write_bytes(b"\n".join(
        orjson.dumps({"celex_id": f"doc-{i}", "title": f"decision {i}",
                      "text": "council regulation on fish and milk " * (1 + i % 9)})
        for i in range(40)) + b"\n")
    output = tmp_path / "e2e.json"
    env = os.environ | {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "bench/e2e_latency.py", "--model", str(model), "--data", str(data),
         "--bootstrap", kafka_bootstrap, "--rates", "25,50", "--phase-s", "2",
         "--full-speed-docs", "60", "--engine-docs", "40", "--gap-s", "0.5",
         "--drain-timeout-s", "60", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    result = json.loads(output.read_text())
    assert output.with_suffix(".png").stat().st_size > 10_000
    assert [phase["load_pct"] for phase in result["phases"]] == [25, 50, "full"]
    for phase in result["phases"]:
        assert phase["all_answered"] and phase["latency"]["answered"] == phase["documents"]
        assert 0 <= phase["latency"]["p50_s"] <= phase["latency"]["p99_s"] < 60
    engine_rate = result["engine_only"]["docs_per_second"]
    half = result["phases"][1]
    assert half["target_rate"] == pytest.approx(engine_rate / 2, rel=0.01)
    assert half["documents"] == max(1, int(half["target_rate"] * 2))
    assert summary["worker_vs_engine_only"] == result["worker_vs_engine_only"] > 0
    assert result["p99_at_half_rate_s"] == half["latency"]["p99_s"]
    assert result["lag_samples"] and result["worker_exit_code"] == 0
