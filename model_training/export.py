"""Write a self-describing checkpoint directory that the worker loads with nothing else."""

import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model_training import __version__
from model_training.model_card import HALF_PRECISION_CHECK, write_model_card
from schemas.manifest import MANIFEST_FILENAME, CheckpointManifest, LabelDef, Thresholds
from worker.inference.checkpoint import load_checkpoint, sha256_file
from worker.inference.engine_settings import dtype_name

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def write_checkpoint(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    *,
    name: str,
    version: str,
    label_names: list[str],
    max_length: int,
    base_model: str,
    thresholds: Thresholds | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    training_args: dict[str, Any] | None = None,
    data_fingerprint: str | None = None,
    data_fingerprints: dict[str, str] | None = None,
    extra_label_fields: list[dict[str, Any]] | None = None,
) -> CheckpointManifest:
    """Save weights (safetensors), tokenizer, ``eurovoc.json`` and a model card (README.md).

    Returns the manifest written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {label: index for index, label in enumerate(label_names)}
    model.config.problem_type = "multi_label_classification"
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    weights = output_dir / WEIGHTS_FILE
    dtype = dtype_name(next(model.parameters()).dtype)
    extra = extra_label_fields or [{} for _ in label_names]
    manifest = CheckpointManifest(
        name=name,
        version=version,
        labels=[
            LabelDef(id=index, name=label, **fields)
            for index, (label, fields) in enumerate(zip(label_names, extra, strict=True))
        ],
        thresholds=thresholds or Thresholds(),
        max_length=max_length,
        base_model=base_model,
        weights_file=WEIGHTS_FILE,
        weights_sha256=sha256_file(weights),
        dtype=dtype,
        data_fingerprint=data_fingerprint,
        data_fingerprints=data_fingerprints or {},
        metrics=metrics or {},
        training_args=training_args or {},
        package_version=__version__,
        git_commit=git_commit(),
        created_at=datetime.now(UTC),
    )
    save_manifest(output_dir, manifest)
    logger.info("wrote checkpoint %s (%s %s)", output_dir, name, version)
    return manifest


def save_manifest(checkpoint_dir: Path, manifest: CheckpointManifest) -> None:
    """Write a checkpoint's ``eurovoc.json`` and (re)generate its model card from it."""
    (Path(checkpoint_dir) / MANIFEST_FILENAME).write_text(
        manifest.model_dump_json(indent=2, by_alias=True), encoding="utf-8"
    )
    write_model_card(checkpoint_dir, manifest)


def half_precision_metrics(
    source_metrics: dict[str, dict[str, float]],
    split: str,
    full: dict[str, dict[str, float]],
    half: dict[str, dict[str, float]],
) -> dict[str, dict[str, float]]:
    """A half-precision copy's metrics: the source's records (its dev metrics among them), the
    measured split's records as the copy scores them, and the check ``half_precision@<split>``.

    ``full`` and ``half`` are ``Scored.metrics()`` of the two checkpoints on the same data.
    """
    return {
        **source_metrics,
        split: half["tuned"],
        f"{split}@0.5": half["0.5"],
        f"{HALF_PRECISION_CHECK}@{split}": {
            "micro_f1_full": full["tuned"]["micro_f1"],
            "micro_f1_half": half["tuned"]["micro_f1"],
            "micro_f1_change": half["tuned"]["micro_f1"] - full["tuned"]["micro_f1"],
        },
    }


def export_half_precision(
    source_dir: Path, output_dir: Path, *, dtype: torch.dtype = torch.float16
) -> CheckpointManifest:
    """Copy a checkpoint with its weights cast to ``dtype`` (thresholds and labels unchanged).

    Its ``metrics`` start empty: see :func:`half_precision_metrics` once both are measured.
    """
    checkpoint = load_checkpoint(source_dir, dtype=dtype)
    source = checkpoint.manifest
    suffix = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    return write_checkpoint(
        checkpoint.model,
        checkpoint.tokenizer,
        output_dir,
        name=source.name,
        version=f"{source.version}-{suffix}",
        label_names=source.label_names,
        max_length=source.max_length,
        base_model=source.base_model,
        thresholds=source.thresholds,
        training_args={**source.training_args, "half_precision_of": str(source_dir)},
        data_fingerprint=source.data_fingerprint,
        data_fingerprints=source.data_fingerprints,
        extra_label_fields=[dict(label.model_extra or {}) for label in source.labels],
    )
