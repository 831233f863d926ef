"""Load labelled document splits behind one interface.

Sources:

- a directory laid out like ``../shared/data/eurlex57k`` (``train``/``dev``/``test`` as
  ``.jsonl.gz`` or ``.jsonl``); one JSON object a line with ``celex_id`` (or ``id``), ``text`` and
  ``labels`` (label ids, or label names), optionally ``eurovoc_concepts``;
- a single JSONL(.gz) file of ``{id, text, labels}``;
- ``hf:multi_eurlex:en`` (``hf:NAME[:CONFIG]``): MultiEURLEX through the ``datasets`` package,
  as the original notebook loaded it (``datasets.load_dataset("multi_eurlex", "en")``). Its level-1
  label ids are in the same order as the packaged labels file. Needs ``pip install datasets`` and
  hub access; it is not available (nor tested) where neither is.
"""

import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from model_training.errors import DataError
from model_training.labels import LabelSet, labels_file_for_data, load_label_set
from schemas.document import InputDocument
from schemas.document_files import DocumentFileError, document_lines
from worker.inference.tokenization import model_text

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {"dev": ("dev", "validation"), "validation": ("validation", "dev")}
HF_PREFIX = "hf:"
HF_SPLITS = {"dev": "validation"}
ID_FIELDS = ("celex_id", "id")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    labels: tuple[int, ...]
    year: int | None = None
    title: str | None = None

    @property
    def model_text(self) -> str:
        """Title and text as the worker feeds them to the model."""
        return model_text(self.text, self.title)


@dataclass(frozen=True)
class Split:
    name: str
    documents: list[Document]
    fingerprint: str
    source: str

    def __len__(self) -> int:
        return len(self.documents)

    def label_matrix(self, num_labels: int) -> np.ndarray:
        """Multi-hot ``float32`` matrix, documents x labels."""
        matrix = np.zeros((len(self.documents), num_labels), dtype=np.float32)
        for row, document in enumerate(self.documents):
            matrix[row, list(document.labels)] = 1.0
        return matrix

    def input_documents(self) -> list[InputDocument]:
        """The documents as the worker receives them (id, text, title)."""
        try:
            return [InputDocument(id=document.id, text=document.text, title=document.title)
                    for document in self.documents]
        except ValidationError as exc:
            raise DataError(f"{self.source}: a document the worker would reject: {exc}") from exc

    def subset(self, size: int | None, *, strategy: str = "random", seed: int = 0) -> "Split":
        """At most ``size`` documents: a seeded random sample, or the most recent ones by year."""
        if size is None or size >= len(self.documents):
            return self
        if strategy == "recent":
            order = sorted(
                range(len(self.documents)),
                key=lambda index: (self.documents[index].year or 0, index),
                reverse=True,
            )
            chosen = sorted(order[:size])
        elif strategy == "random":
            chosen = sorted(random.Random(seed).sample(range(len(self.documents)), size))
        else:
            raise DataError(f"unknown subset strategy {strategy!r} (use 'random' or 'recent')")
        return Split(
            name=self.name,
            documents=[self.documents[index] for index in chosen],
            fingerprint=f"{self.fingerprint}:{strategy}{size}"
            + (f"s{seed}" if strategy == "random" else ""),
            source=self.source,
        )


def label_set_for_data(data: str, labels_file: str | None = None) -> LabelSet:
    """The labels file given, else the one beside local ``data``, else the packaged labels."""
    local = None if data.startswith(HF_PREFIX) else Path(data)
    return load_label_set(Path(labels_file) if labels_file else labels_file_for_data(local))


def load_split(
    data: str | Path, split: str, label_set: LabelSet, *, with_labels: bool = True
) -> Split:
    """Load split ``split`` (train/dev/test) of ``data``: a directory, a JSONL file or ``hf:``.

    ``with_labels=False`` reads only ids and texts (for prediction).
    """
    if str(data).startswith(HF_PREFIX):
        return _load_hf(str(data), split, label_set)
    path = resolve_split_path(Path(data), split)
    return read_jsonl(path, label_set, with_labels=with_labels, name=split)


def resolve_split_path(data: Path, split: str) -> Path:
    if data.is_file():
        return data
    if not data.exists():
        raise DataError(f"data path {data} does not exist")
    names = SPLIT_ALIASES.get(split, (split,))
    candidates = [data / f"{name}{suffix}" for name in names for suffix in (".jsonl.gz", ".jsonl")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no {split!r} split in {data}: looked for {', '.join(path.name for path in candidates)}"
    )


def read_jsonl(
    path: Path, label_set: LabelSet, *, with_labels: bool = True, name: str | None = None
) -> Split:
    """Read one JSONL(.gz) file; every line is validated and errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    documents = []
    # The documents' own bytes (decompressed, blank lines skipped): the same data has the same
    # fingerprint whatever its file name, place or compression.
    digest = hashlib.sha256()
    try:
        for number, line in document_lines(path):
            digest.update(line.rstrip(b"\r\n") + b"\n")
            documents.append(_parse_line(line, path, number, label_set, with_labels))
    except DocumentFileError as exc:
        raise DataError(str(exc)) from exc
    if not documents:
        raise DataError(f"{path} is empty: no documents in this split")
    logger.info("read %d documents from %s", len(documents), path)
    return Split(
        name=name or path.name.split(".")[0],
        documents=documents,
        fingerprint=f"sha256:{digest.hexdigest()[:16]}",
        source=str(path),
    )


def _parse_line(
    line: bytes, path: Path, number: int, label_set: LabelSet, with_labels: bool
) -> Document:
    where = f"{path}:{number}"
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    text = row.get("text")
    if not isinstance(text, str):
        raise DataError(f"{where}: missing string field 'text'")
    doc_id = next((row[field] for field in ID_FIELDS if row.get(field) is not None), number)
    labels = _labels_of(row, where, label_set) if with_labels else ()
    year = row.get("year")
    title = row.get("title")
    return Document(
        id=str(doc_id),
        text=text,
        labels=labels,
        year=year if isinstance(year, int) else None,
        title=title if isinstance(title, str) else None,
    )


def _labels_of(row: dict[str, Any], where: str, label_set: LabelSet) -> tuple[int, ...]:
    if label_set.from_concepts:
        concepts = row.get("eurovoc_concepts")
        if not isinstance(concepts, list):
            raise DataError(
                f"{where}: missing list 'eurovoc_concepts' (the labels file maps concepts)"
            )
        return tuple(sorted({i for c in concepts for i in label_set.concepts.get(str(c), ())}))
    raw = row.get("labels")
    if raw is None:
        raise DataError(f"{where}: missing field 'labels'")
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'labels' must be a list of label ids or names")
    return _label_ids(raw, where, label_set)


def _label_ids(raw: list[Any], where: str, label_set: LabelSet) -> tuple[int, ...]:
    ids = set()
    for value in raw:
        if isinstance(value, bool):
            raise DataError(f"{where}: label {value!r} is not a label id or name")
        if isinstance(value, int):
            if not 0 <= value < len(label_set):
                raise DataError(
                    f"{where}: unknown label id {value}: the labels file {label_set.source} "
                    f"defines ids 0..{len(label_set) - 1}"
                )
            ids.add(value)
        elif isinstance(value, str) and value in label_set.names:
            ids.add(label_set.names.index(value))
        else:
            raise DataError(
                f"{where}: unknown label {value!r}: "
                f"not a name in the labels file {label_set.source}"
            )
    return tuple(sorted(ids))


def _load_hf(spec: str, split: str, label_set: LabelSet) -> Split:
    """``hf:NAME[:CONFIG]`` through ``datasets.load_dataset`` (default config ``en``)."""
    try:
        import datasets  # noqa: PLC0415 - optional dependency, imported only for this source
    except ImportError as exc:
        raise DataError(
            f"{spec} needs the 'datasets' package (pip install datasets) and hub access"
        ) from exc
    name, _, config = spec.removeprefix(HF_PREFIX).partition(":")
    dataset = datasets.load_dataset(name, config or "en", split=HF_SPLITS.get(split, split))
    documents = [
        Document(
            id=str(row.get("celex_id", index)),
            text=row["text"],
            labels=_label_ids(list(row["labels"]), f"{spec}[{split}][{index}]", label_set),
        )
        for index, row in enumerate(dataset)
    ]
    if not documents:
        raise DataError(f"{spec} split {split!r} is empty")
    return Split(
        name=split,
        documents=documents,
        fingerprint=f"{name}:{config or 'en'}:{split}:{getattr(dataset, '_fingerprint', '')}",
        source=spec,
    )
