"""``classify_file`` with a fake engine: the shared line parser, skipping, order, bad input."""

import gzip
import logging
from datetime import UTC, datetime

import orjson
import pytest

from schemas.labels import LabelsMessage, ModelInfo
from worker.classify import build_parser, classify_file, settings_from_args
from worker.document_files import DocumentFileError
from worker.work_items import WorkResult


class _Settings:
    max_queued_documents = 4


class FakeEngine:
    """Finishes documents newest first, so ``classify_file`` must restore the input order."""

    settings = _Settings()

    def __init__(self) -> None:
        self.held: list = []

    def submit(self, items) -> None:
        self.held.extend(items)

    def pending(self) -> int:
        return len(self.held)

    def poll_results(self, timeout: float = 0.0):
        held, self.held = self.held[::-1], []
        return [
            WorkResult(item, LabelsMessage(
                id=item.document.id, labels=[], scores={}, thresholds={},
                model=ModelInfo(name="m", version="1", sha256="0" * 64), truncated=False,
                chunks=1, tokens=3, produced_at=datetime.now(UTC)), None)
            for item in held
        ]


def test_bad_lines_are_skipped_with_their_line_numbers_and_the_order_is_kept(tmp_path, caplog):
    source = tmp_path / "in.jsonl.gz"
    lines = [orjson.dumps({"id": f"d{i}", "text": "fish"}) for i in range(10)]
    lines[3:3] = [b"{oops", b"", b'{"id": "x", "text": ""}', b"7"]
    source.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.ERROR, logger="worker.classify"):
        summary = classify_file(FakeEngine(), str(source), str(out), progress=False)
    assert (summary["documents"], summary["written"], summary["invalid_lines"]) == (10, 10, 3)
    ids = [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert ids == [f"d{i}" for i in range(10)]
    assert "line 4: not JSON" in caplog.text
    assert "line 6: invalid document: text" in caplog.text
    assert "line 7: expected a JSON object, got int" in caplog.text


def test_an_unreadable_input_raises_and_leaves_no_output(tmp_path):
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(b"this is not gzip")
    out = tmp_path / "out.jsonl"
    with pytest.raises(DocumentFileError, match="cannot read"):
        classify_file(FakeEngine(), str(source), str(out), progress=False)
    assert list(tmp_path.iterdir()) == [source]


def test_engine_flags_are_the_engine_settings_and_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("EUROVOC_MAX_CHUNKS", "2")
    args = build_parser().parse_args(
        ["in.jsonl", "-o", "out.jsonl", "--model", "m", "--long-documents", "chunk",
         "--chunk-stride", "8", "--no-warmup", "--limit", "5"])
    settings = settings_from_args(args)
    assert (settings.long_documents, settings.chunk_stride, settings.warmup) == ("chunk", 8, False)
    assert settings.max_chunks == 4  # flags only: EUROVOC_* is the Kafka worker's
    assert args.limit == 5
