"""``classify`` as a user runs it: a subprocess on JSON-lines files.

Runs ``python -m worker.commands.classify`` (the same function that ``eurovoc-worker classify`` calls).
"""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from schemas.labels import LabelsMessage
from tests.tiny_checkpoint import make_tiny_checkpoint

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHARED_TEST = REPO.parent / "shared" / "data" / "eurlex57k" / "test.jsonl.gz"
WORDS = "council regulation fish milk wine steel trade customs tax bank court water".split()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model")
    make_tiny_checkpoint(path, max_length=32)
    return path


def classify(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "worker.commands.classify", "--no-progress", *map(str, args)],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=180,
    )


def read_messages(path: Path) -> list[LabelsMessage]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return [LabelsMessage.model_validate_json(line) for line in handle if line.strip()]


def text(n: int) -> str:
    return " ".join(WORDS[(i * 5 + n) % len(WORDS)] for i in range(n))


def mixed_input() -> tuple[bytes, list[str]]:
    """40 documents of very different lengths with bad lines in between."""
    lines, ids = [], []
    for index in range(40):
        if index == 2:
            lines.append(b"{not json")  # line 3
        if index == 10:
            lines.append(orjson.dumps({"id": "empty", "text": "   "}))  # schema violation
            lines.append(b"")  # blank: ignored, not an error
            lines.append(b"[1, 2]")  # not an object
        doc_id = f"doc-{index}"
        ids.append(doc_id)
        n_words = 200 if index % 5 == 0 else 1 + index % 7
        if index == 7:  # the shared data format: celex_id, title, extra fields
            lines.append(orjson.dumps({
                "celex_id": doc_id, "title": "council decision", "text": text(n_words),
                "year": 2012, "labels": [1, 2],
            }))
        else:
            lines.append(orjson.dumps({"id": doc_id, "text": text(n_words)}))
    return b"\n".join(lines) + b"\n", ids


def test_labels_valid_lines_in_input_order_and_reports_bad_lines(model, tmp_path):
    data, ids = mixed_input()
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    out = tmp_path / "out.jsonl"
    result = classify("--model", model, source, "-o", out, "--max-batch-size", "4")
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr  # worker.exit_codes.ExitCode.REJECTED
    assert "line 3: not JSON" in stderr
    assert "line 12: document text is empty" in stderr
    assert "line 14: document must be a JSON object" in stderr
    assert "3 lines were skipped" in stderr
    messages = read_messages(out)
    assert [message.id for message in messages] == ids
    for message in messages:
        assert message.source is None
        assert len(message.scores) == 21 and message.chunks == 1
        assert message.model.name == "tiny-random-bert"
    long_doc = messages[0]
    assert long_doc.truncated and long_doc.tokens == 32
    assert not messages[1].truncated and messages[1].tokens == 2 + 2
    assert not list(tmp_path.glob(".*partial"))


def test_skip_invalid_gzip_and_chunk_mode(model, tmp_path):
    data, ids = mixed_input()
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(gzip.compress(data))
    out = tmp_path / "out.jsonl.gz"
    result = classify(
        "--model", model, source, "-o", out, "--skip-invalid",
        "--long-documents", "chunk", "--chunk-stride", "8", "--max-chunks", "4",
    )
    assert result.returncode == 0, result.stderr.decode()
    messages = read_messages(out)
    assert [message.id for message in messages] == ids
    assert messages[0].chunks == 4 and messages[0].truncated  # 200 words > 4 windows
    assert messages[1].chunks == 1


def test_stdin_to_stdout(model):
    data = orjson.dumps({"id": "only", "text": "fish and milk"}) + b"\n"
    result = classify("--model", model, "-", "-o", "-", stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    [line] = result.stdout.splitlines()
    assert LabelsMessage.model_validate_json(line).id == "only"


def test_bad_model_or_settings_exit_2_without_output(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(orjson.dumps({"id": "a", "text": "fish"}) + b"\n")
    out = tmp_path / "out.jsonl"
    missing = classify("--model", tmp_path / "nothing", source, "-o", out)
    assert missing.returncode == 2
    assert "eurovoc.json is missing" in missing.stderr.decode()
    invalid = classify("--model", model, source, "-o", out, "--max-batch-tokens", "8")
    assert invalid.returncode == 2
    assert "max_batch_tokens" in invalid.stderr.decode()
    assert not out.exists()


@pytest.mark.skipif(not SHARED_TEST.is_file(), reason="shared EURLEX57K data not available")
def test_real_data_file(model, tmp_path):
    out = tmp_path / "out.jsonl"
    result = classify("--model", model, SHARED_TEST, "-o", out, "--limit", "25")
    assert result.returncode == 0, result.stderr.decode()
    messages = read_messages(out)
    with gzip.open(SHARED_TEST, "rb") as handle:
        expected = [orjson.loads(next(handle))["celex_id"] for _ in range(25)]
    assert [message.id for message in messages] == expected
    assert sum(message.truncated for message in messages) > 0
