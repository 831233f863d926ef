"""Load a self-describing checkpoint directory: safetensors weights, tokenizer, ``eurovoc.json``.

This is the single place that reads checkpoints; the training package's ``evaluate``,
``tune-thresholds`` and the end of training load them through the worker's engine
(``worker.inference.batch_scoring``), so they measure exactly what the worker runs.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from schemas.manifest import CheckpointError, CheckpointManifest, read_manifest

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Architectures whose transformers implementation supports scaled-dot-product attention.
_SDPA_UNSUPPORTED = {"mpnet"}


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint directory: its manifest (labels, thresholds, max length), its fast
    tokenizer and its model, on the device and in the dtype it was loaded for."""

    path: Path
    manifest: CheckpointManifest
    tokenizer: PreTrainedTokenizerFast
    model: PreTrainedModel


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def attention_implementation(model_type: str) -> str:
    return "eager" if model_type in _SDPA_UNSUPPORTED else "sdpa"


def load_checkpoint(
    path: Path | str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    verify_weights: bool = True,
) -> Checkpoint:
    """Load a checkpoint for inference (``eval()`` mode, on ``device``).

    Only safetensors weights are accepted and no code from the checkpoint is ever executed.
    ``dtype`` defaults to the dtype the weights were exported in; pass one to run in another.
    """
    path = Path(path)
    manifest = read_manifest(path)
    weights = path / manifest.weights_file
    if not weights.is_file() or weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights} is missing or not a .safetensors file")
    if verify_weights:
        actual = sha256_file(weights)
        if actual != manifest.weights_sha256:
            raise CheckpointError(
                f"{weights} sha256 {actual} does not match the manifest's {manifest.weights_sha256}"
            )
    target_dtype = dtype or _DTYPES[manifest.dtype]
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    if not tokenizer.is_fast:
        raise CheckpointError(f"{path} has no fast tokenizer (tokenizer.json)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        use_safetensors=True,
        trust_remote_code=False,
        dtype=target_dtype,
        attn_implementation=attention_implementation(config.model_type),
    )
    if model.config.num_labels != len(manifest.labels):
        raise CheckpointError(
            f"model has {model.config.num_labels} outputs but the manifest names "
            f"{len(manifest.labels)} labels"
        )
    model.to(device).eval()
    logger.info(
        "loaded checkpoint",
        extra={"path": str(path), "model": manifest.name, "version": manifest.version},
    )
    return Checkpoint(path=path, manifest=manifest, tokenizer=tokenizer, model=model)
