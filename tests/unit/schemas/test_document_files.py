import gzip
import re

import pytest

from schemas.document_files import DocumentFileError, read_documents


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
        ('{"id": "a", "text": ""}\n', r"docs.jsonl:1: document text is empty"),
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


# -- the line parser shared by ``produce`` (read_documents) and ``classify`` ----------------


def test_parse_document_line_takes_bytes_or_text_and_the_eurlex_id():
    from schemas.document_files import parse_document_line

    document = parse_document_line(b'{"celex_id": "3", "text": "t", "labels": [1]}\n', "f", 1)
    assert (document.id, document.text) == ("3", "t")
    assert parse_document_line('{"id": "a", "celex_id": "3", "text": "t"}', "f", 1).id == "a"


@pytest.mark.parametrize(
    "line, problem",
    [
        (b"{broken", r"^not JSON: "),
        (b"[1, 2]", r"^document must be a JSON object, got list$"),
        (b'{"id": "a", "text": "  "}', r"^document text is empty$"),
        (b'{"id": "a", "title": 5, "text": "t"}', r"^title: "),
        (b'{"id": "a", "text": "\xff"}', r"^not UTF-8: "),
    ],
)
def test_a_bad_line_names_the_file_the_line_and_the_problem(line, problem):
    from schemas.document_files import DocumentLineError, parse_document_line

    with pytest.raises(DocumentLineError) as caught:
        parse_document_line(line, "in.jsonl", 7)
    assert isinstance(caught.value, DocumentFileError)
    assert caught.value.line_number == 7
    assert re.search(problem, caught.value.problem)
    assert str(caught.value) == f"in.jsonl:7: {caught.value.problem}"


@pytest.mark.parametrize(
    "line",
    [
        b"{broken",
        b"[1, 2]",
        b'{"id": "a", "text": "  "}',
        b'{"id": "a", "text": "\xff"}',
        b'{"id": "3", "title": 5, "metadata": {"k": 1}, "text": "t"}',
    ],
)
def test_a_bad_line_is_described_as_the_worker_describes_that_record(line):
    """One parser: a line's problem is the decode step's dead-letter reason for those bytes."""
    from schemas.document_files import DocumentLineError, parse_document_line
    from worker.pipeline.steps.decode import decode_value

    with pytest.raises(DocumentLineError) as caught:
        parse_document_line(line, "in.jsonl", 7)
    assert caught.value.problem == decode_value(line, 1000).message


def test_the_eurlex_id_is_read_from_files_only():
    """``celex_id`` is the files' format: a Kafka record needs the document's own ``id``."""
    from schemas.dead_letter import ErrorType
    from schemas.document_files import parse_document_line
    from worker.pipeline.steps.decode import decode_value

    line = b'{"celex_id": "32012R0001", "title": "T", "text": "t", "labels": [1]}'
    assert parse_document_line(line, "in.jsonl", 1).id == "32012R0001"
    rejected = decode_value(line, 1000)
    assert rejected.error_type is ErrorType.SCHEMA and rejected.message.startswith("id: ")


def test_document_lines_skip_blank_lines_and_keep_line_numbers(tmp_path):
    from schemas.document_files import document_lines

    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n  \r\n{"id": "b"}\r\n')
    assert [number for number, _ in document_lines(path)] == [1, 4]


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "\xff"}\n')
    with pytest.raises(DocumentFileError, match=r"docs.jsonl:2: not UTF-8"):
        list(read_documents(path))
