"""Read documents from JSONL files (plain or gzip): ``{id, text, ...}`` or the EUR-Lex data format."""

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson
from pydantic import ValidationError

from schemas.document import InputDocument


class DocumentFileError(ValueError):
    """A documents file is missing, unreadable or has an invalid line (message names the line)."""


def _open_text(path: Path) -> IO[str]:
    if not path.is_file():
        raise DocumentFileError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _as_document(record: object) -> InputDocument:
    if isinstance(record, dict) and "id" not in record and "celex_id" in record:
        record = {**record, "id": record["celex_id"]}
    return InputDocument.model_validate(record)


def read_documents(path: Path | str) -> Iterator[InputDocument]:
    """Yield validated documents; the EUR-Lex ``celex_id`` becomes the document ``id``.

    Blank lines are skipped. The first invalid line raises ``DocumentFileError`` naming the file,
    the line number and the problem.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield _as_document(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise DocumentFileError(f"{path}:{line_number}: not JSON ({exc})") from exc
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(map(str, error['loc'])) or 'document'}: {error['msg']}"
                        for error in exc.errors()
                    )
                    raise DocumentFileError(f"{path}:{line_number}: {problems}") from exc
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DocumentFileError(f"{path}: cannot read ({exc})") from exc
