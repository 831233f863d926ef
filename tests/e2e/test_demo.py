"""`make demo`'s script end to end on the real broker, with a tiny model and the bundled samples."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.kafka_fixtures import free_ports
from tests.tiny_checkpoint import make_tiny_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "local" / "demo.py"
SAMPLES = DEMO.with_name("sample_documents.jsonl")


def test_demo_labels_every_sample_document(kafka_bootstrap, tmp_path):
    model = tmp_path / "model"
    make_tiny_checkpoint(model)
    (port,) = free_ports(1)
    env = os.environ | {"KAFKA_BOOTSTRAP": kafka_bootstrap, "EUROVOC_MODEL": str(model)}
    result = subprocess.run(
        [sys.executable, str(DEMO), "--documents", str(SAMPLES), "--metrics-port", str(port),
         "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5/5 documents labelled" in result.stdout
    assert "Worker exit code 0" in result.stdout
    (labels,) = (tmp_path / "runs").glob("demo-*/labels.jsonl")
    ids = sorted(orjson.loads(line)["id"] for line in labels.read_text().splitlines())
    assert ids == [f"sample-{index}" for index in range(1, 6)]
