"""Documents in JSONL files (plain or gzip): ``{id, text, ...}`` or the EUR-Lex data format
(``celex_id``, ``title``, ``text``, ...); output files written in place.

Every line is parsed by ``schemas.codec.decode_document``, the parser of the worker's Kafka
records, after :func:`eurlex_fields`: ``produce`` (:func:`read_documents`, stops at the first bad
line), ``classify`` (:func:`document_lines` + :func:`parse_document_line`, skips and counts bad
lines), the training data and the benchmarks.
"""

import gzip
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from schemas.codec import InvalidDocument, decode_document
from schemas.document import InputDocument

STDIN = "-"


class DocumentFileError(ValueError):
    """A documents file is missing, unreadable or has an invalid line (message names the line)."""


class DocumentLineError(DocumentFileError):
    """One line is not a valid document; the message is ``FILE:LINE: problem``, ``problem`` the
    same words as the worker's dead-letter reason for that record (for a log line that names the
    line itself)."""

    def __init__(self, source: str, line_number: int, problem: str):
        super().__init__(f"{source}:{line_number}: {problem}")
        self.source = source
        self.line_number = line_number
        self.problem = problem


def source_name(path: Path | str) -> str:
    return "<stdin>" if str(path) == STDIN else str(path)


@contextmanager
def open_documents(path: Path | str) -> Iterator[IO[bytes]]:
    """The file as bytes: ``.gz`` decompressed, ``-`` standard input."""
    if str(path) == STDIN:
        yield sys.stdin.buffer
        return
    path = Path(path)
    if not path.is_file():
        raise DocumentFileError(f"{path}: no such file")
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
        yield handle


def document_lines(path: Path | str) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line; read errors raise ``DocumentFileError``."""
    try:
        with open_documents(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    yield line_number, line
    except (OSError, EOFError) as exc:
        raise DocumentFileError(f"{source_name(path)}: cannot read ({exc})") from exc


def eurlex_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A line's fields as a document's: the EUR-Lex ``celex_id`` is the ``id`` when there is none
    (``title`` and ``text`` are already the document's; other fields are ignored)."""
    if "id" not in record and "celex_id" in record:
        return {**record, "id": record["celex_id"]}
    return record


def parse_document_line(line: bytes | str, source: str, line_number: int) -> InputDocument:
    """The document on one line (``{id, text, ...}`` or EUR-Lex).

    Raises ``DocumentLineError`` naming ``source:line_number`` and the problem.
    """
    try:
        return decode_document(line, fields=eurlex_fields)
    except InvalidDocument as exc:
        raise DocumentLineError(source, line_number, str(exc)) from exc


def read_documents(path: Path | str) -> Iterator[InputDocument]:
    """Yield validated documents; the EUR-Lex ``celex_id`` becomes the document ``id``.

    Blank lines are skipped. The first invalid line raises ``DocumentFileError`` naming the file,
    the line number and the problem.
    """
    source = source_name(path)
    for line_number, line in document_lines(path):
        yield parse_document_line(line, source, line_number)


@contextmanager
def open_output(path: str) -> Iterator[IO[bytes]]:
    """Write to ``path`` (``.gz`` compressed, ``-`` standard output) through a temporary file
    renamed into place at the end: a failed run leaves no half-written output."""
    if path == STDIN:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    final = Path(path)
    temporary = final.with_name(f".{final.name}.partial")
    raw = open(temporary, "wb")  # noqa: SIM115 - closed below
    handle: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb") if path.endswith(".gz") else raw
    try:
        yield handle
    except BaseException:
        handle.close()
        raw.close()
        temporary.unlink(missing_ok=True)
        raise
    handle.close()
    raw.close()
    os.replace(temporary, final)
