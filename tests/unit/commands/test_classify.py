"""``classify_file`` with a fake engine: the shared line parser, the shared feeding, skipping,
order, bad input."""

import gzip
import logging

import orjson
import pytest

from schemas.document_files import DocumentFileError
from tests.fake_engine import FakeEngine
from worker.commands.classify import build_parser, classify_file
from worker.settings.engine_flags import settings_from_args


def newest_first(max_in_flight: int = 4) -> FakeEngine:
    """Finishes each group newest first: ``classify_file`` must restore the input order."""
    return FakeEngine(reverse=True, max_in_flight=max_in_flight)


def test_bad_lines_are_skipped_with_their_line_numbers_and_the_order_is_kept(tmp_path, caplog):
    source = tmp_path / "in.jsonl.gz"
    lines = [orjson.dumps({"id": f"d{i}", "text": "fish"}) for i in range(10)]
    lines[3:3] = [b"{oops", b"", b'{"id": "x", "text": ""}', b"7"]
    source.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.ERROR, logger="worker.commands.classify"):
        summary = classify_file(newest_first(), str(source), str(out), progress=False)
    assert (summary["documents"], summary["written"], summary["invalid_lines"]) == (10, 10, 3)
    ids = [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert ids == [f"d{i}" for i in range(10)]
    assert "line 4: not JSON" in caplog.text
    assert "line 6: document text is empty" in caplog.text
    assert "line 7: document must be a JSON object, got int" in caplog.text


def test_an_unreadable_input_raises_and_leaves_no_output(tmp_path):
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(b"this is not gzip")
    out = tmp_path / "out.jsonl"
    with pytest.raises(DocumentFileError, match="cannot read"):
        classify_file(newest_first(), str(source), str(out), progress=False)
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
