"""Label sets: which labels a model predicts, read from a labels file (never hard-coded).

A labels file is a JSON list of objects in output order, each with at least ``id`` (0..n-1) and
``name``; other fields (``eurovoc_domain``, ``eurovoc_id``, ...) are kept and written into the
checkpoint manifest. A label may also list the EuroVoc ``concepts`` it stands for; documents then
get their labels from their ``eurovoc_concepts`` (see :func:`build_concept_labels`), which is how
a deeper label level (for example EuroVoc level 2, the microthesauri) trains with no code change.
"""

import gzip
import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from model_training.errors import DataError

DEFAULT_LABELS_FILE = "labels_level1.json"
# Label files a data directory may carry, most specific first.
DATA_DIR_LABEL_FILES = ("labels.json", DEFAULT_LABELS_FILE)
CONCEPTS_FIELD = "concepts"


@dataclass(frozen=True)
class LabelSet:
    names: list[str]
    extra: list[dict[str, Any]] = field(default_factory=list)
    concepts: dict[str, list[int]] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)

    @property
    def from_concepts(self) -> bool:
        """True when documents' labels are derived from their EuroVoc concepts."""
        return bool(self.concepts)

    def check_same_names(self, other_names: list[str], *, what: str) -> None:
        if list(other_names) != self.names:
            raise DataError(
                f"label file mismatch: {self.source} defines {len(self.names)} labels "
                f"{_preview(self.names)} but {what} has {len(other_names)} labels "
                f"{_preview(list(other_names))}"
            )


def _preview(names: list[str], count: int = 3) -> str:
    shown = ", ".join(repr(name) for name in names[:count])
    return f"[{shown}{', ...' if len(names) > count else ''}]"


def default_labels_path() -> Path:
    return Path(str(resources.files("model_training") / "data" / DEFAULT_LABELS_FILE))


def labels_file_beside(data: Path) -> Path | None:
    """The labels file a data directory (or a data file's directory) carries, if any."""
    folder = data if data.is_dir() else data.parent
    return next((folder / name for name in DATA_DIR_LABEL_FILES if (folder / name).is_file()), None)


def labels_file_for_data(data: Path | None) -> Path:
    """The labels file beside the data, else the packaged 21 level-1 labels."""
    found = labels_file_beside(data) if data is not None else None
    return found or default_labels_path()


def load_label_set(path: Path | None = None) -> LabelSet:
    path = Path(path) if path is not None else default_labels_path()
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"labels file {path} is not valid JSON: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise DataError(f"labels file {path} must be a non-empty JSON list of {{id, name}}")
    names: list[str] = []
    extra: list[dict[str, Any]] = []
    concepts: dict[str, list[int]] = defaultdict(list)
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("id") != position or not entry.get("name"):
            raise DataError(
                f"labels file {path}: entry {position} must be an object with id={position} "
                f"and a non-empty name, got {entry!r:.200}"
            )
        fields = {k: v for k, v in entry.items() if k not in ("id", "name", CONCEPTS_FIELD)}
        names.append(str(entry["name"]))
        extra.append(fields)
        for concept in entry.get(CONCEPTS_FIELD, []):
            concepts[str(concept)].append(position)
    if len(set(names)) != len(names):
        raise DataError(f"labels file {path}: label names must be unique")
    return LabelSet(names=names, extra=extra, concepts=dict(concepts), source=str(path))


def build_concept_labels(concepts_path: Path, *, level: int) -> list[dict[str, Any]]:
    """A labels file's entries for EuroVoc level 1 (domains) or 2 (microthesauri).

    ``concepts_path`` is ``eurovoc_concepts.json.gz`` (concept id -> {label, domains,
    microthesauri}). Each entry lists its ``concepts``, so documents are labelled from their
    ``eurovoc_concepts``. Groups are ordered by their EuroVoc code; names are the codes, since the
    concepts file carries no group names.
    """
    if level not in (1, 2):
        raise DataError(f"EuroVoc level must be 1 or 2, got {level}")
    if not Path(concepts_path).is_file():
        raise DataError(f"EuroVoc concepts file {concepts_path} does not exist")
    key, prefix = ("domains", "domain") if level == 1 else ("microthesauri", "microthesaurus")
    with gzip.open(concepts_path, "rt", encoding="utf-8") as handle:
        table: dict[str, dict[str, Any]] = json.load(handle)
    groups: dict[int, list[str]] = defaultdict(list)
    for concept_id, concept in table.items():
        for group in concept.get(key, []):
            groups[int(group)].append(concept_id)
    return [
        {
            "id": index,
            "name": f"{prefix} {group}",
            f"eurovoc_{prefix}": group,
            CONCEPTS_FIELD: sorted(members, key=int),
        }
        for index, (group, members) in enumerate(sorted(groups.items()))
    ]
