"""Load a self-describing checkpoint directory: safetensors weights, tokenizer, ``eurovoc.json``.

This is the single place that reads checkpoints; the training package's ``evaluate``,
``tune-thresholds`` and the end of training load them through the worker's engine
(``worker.inference.batch_scoring``), so they measure exactly what the worker runs.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import safetensors
import safetensors.torch
import torch
from transformers import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
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
    The weights are those of the file the manifest names, opened once: hashed
    (``verify_weights``) and loaded from that open file into the model its ``config.json``
    describes, so another weights file in the directory (a ``model.safetensors`` beside the
    manifest's file, a sharded index), or a file put in its place after the check, is never
    what runs; every parameter of the model must come from that file. ``dtype`` defaults
    to the dtype the weights were exported in; pass one to run in another.
    """
    path = Path(path)
    manifest = read_manifest(path)
    weights = path / manifest.weights_file
    if not weights.is_file() or weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights} is missing or not a .safetensors file")
    with weights.open("rb") as handle:  # hashed and loaded through one open file
        if verify_weights:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
            if actual != manifest.weights_sha256:
                raise CheckpointError(f"{weights} sha256 {actual} does not match the manifest's "
                                      f"{manifest.weights_sha256}")
        state_dict = _read_weights(weights, handle)
    target_dtype = dtype or _DTYPES[manifest.dtype]
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    if not tokenizer.is_fast:
        raise CheckpointError(f"{path} has no fast tokenizer (tokenizer.json)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model = _model_from(weights, config, state_dict, target_dtype)
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


def _read_weights(weights: Path, handle: BinaryIO) -> dict[str, torch.Tensor]:
    """The tensors of the open file ``handle`` (memory-mapped, as ``from_pretrained`` maps
    them: no copy of the file in memory). Through ``/proc/self/fd`` where there is one: the
    file that was opened and hashed even if ``weights`` was renamed or replaced meanwhile."""
    opened = Path(f"/proc/self/fd/{handle.fileno()}")
    try:
        return safetensors.torch.load_file(opened if opened.exists() else weights)
    except safetensors.SafetensorError as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {exc}") from exc


def _model_from(weights: Path, config: PretrainedConfig, state_dict: dict[str, torch.Tensor],
                dtype: torch.dtype) -> PreTrainedModel:
    """The sequence-classification model of ``config``, every parameter from ``state_dict``
    (transformers' own loading: its key conversions, dtype and attention implementation)."""
    try:
        model_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        raise CheckpointError(f"{weights.parent}: model type {config.model_type!r} has no "
                              "sequence-classification model in transformers") from None
    model, loading = model_class.from_pretrained(
        None,
        config=config,
        state_dict=state_dict,
        trust_remote_code=False,
        dtype=dtype,
        attn_implementation=attention_implementation(config.model_type),
        output_loading_info=True,
    )
    problems = {kind: sorted(loading[kind]) for kind in
                ("missing_keys", "unexpected_keys", "mismatched_keys") if loading.get(kind)}
    if problems:
        described = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(map(str, keys[:5]))}"
                              f"{' ...' if len(keys) > 5 else ''}"
                              for kind, keys in problems.items())
        raise CheckpointError(f"{weights} does not hold the weights of the model its config "
                              f"describes ({described})")
    return model
