import gzip

import pytest

from worker.document_files import DocumentFileError, read_documents


def test_reads_plain_and_eurlex_formats_from_gzip(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('{"id": "a", "text": "one"}\n\n')
        handle.write('{"celex_id": "32012R0001", "text": "two", "title": "T", "labels": [1]}\n')
    documents = list(read_documents(path))
    assert [(d.id, d.text, d.title) for d in documents] == [("a", "one", None), ("32012R0001", "two", "T")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "text": "x"}\n{broken\n', r"docs.jsonl:2: not JSON"),
        ('{"id": "a"}\n', r"docs.jsonl:1: text: Field required"),
        ('{"id": "a", "text": ""}\n', r"docs.jsonl:1: text: .*at least 1 character"),
    ],
)
def test_bad_lines_are_named(tmp_path, content, message):
    path = tmp_path / "docs.jsonl"
    path.write_text(content)
    with pytest.raises(DocumentFileError, match=message):
        list(read_documents(path))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DocumentFileError, match="no such file"):
        list(read_documents(tmp_path / "nope.jsonl"))
    corrupt = tmp_path / "bad.jsonl.gz"
    corrupt.write_bytes(b"not gzip at all")
    with pytest.raises(DocumentFileError, match="cannot read"):
        list(read_documents(corrupt))
