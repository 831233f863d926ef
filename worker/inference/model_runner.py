"""Run the classifier on padded batches (:class:`ModelRunner`)."""

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from schemas.manifest import CheckpointManifest
from worker.inference.batching import PAD_MULTIPLE, pad_multiple, padded_length
from worker.inference.checkpoint import Checkpoint, CheckpointError
from worker.inference.compilation import CompileMode, compiled_forward

logger = logging.getLogger(__name__)

MULTI_LABEL = "multi_label_classification"
# Models whose position ids start after the padding index (2 positions fewer are usable).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text"}

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""A model's forward pass: padded ``input_ids``/``attention_mask`` in, logits out."""


def eager_forward(model: torch.nn.Module) -> Forward:
    """``model``'s forward pass, uncompiled."""
    return lambda inputs: model(**inputs).logits


class SequenceFailedError(RuntimeError):
    """One sequence could not be scored even alone (out of memory): a per-document error."""


@dataclass(slots=True)
class ScoredBatch:
    """Probabilities of every sequence; rows in ``errors`` are NaN and carry the reason."""

    probabilities: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    oom_splits: int = 0  # times a (sub-)batch ran out of memory and was split in halves


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


def max_positions(config) -> int | None:
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    return positions - 2 if config.model_type in _OFFSET_POSITIONS else positions


class ModelRunner:
    """Scores batches of token-id sequences with a loaded checkpoint: pads them (to
    :func:`~worker.inference.batching.pad_multiple` of the device), runs the forward pass in
    inference mode and returns sigmoid probabilities; a batch that runs out of memory is split
    in halves, and a sequence that does not fit even alone becomes a per-sequence error.

    ``forward`` replaces the model's forward pass (tests simulate out-of-memory with it);
    :meth:`compile` replaces it with a ``torch.compile``-d one.

    Thread use: one thread at a time calls :meth:`score`/:meth:`score_batch` (the engine's
    inference thread).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        max_length: int | None = None,
        forward: Forward | None = None,
    ) -> None:
        config = checkpoint.model.config
        manifest = checkpoint.manifest
        if config.problem_type != MULTI_LABEL:
            raise CheckpointError(
                f"{checkpoint.path}: problem_type is {config.problem_type!r}; the worker only "
                f"runs {MULTI_LABEL!r} checkpoints (independent sigmoid per label)"
            )
        id2label = {int(key): value for key, value in (config.id2label or {}).items()}
        expected = dict(enumerate(manifest.label_names))
        if id2label != expected:
            raise CheckpointError(
                f"{checkpoint.path}: config id2label does not match the manifest's labels"
            )
        self.checkpoint = checkpoint
        self.manifest: CheckpointManifest = manifest
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.label_names: list[str] = manifest.label_names
        self.max_length = max_length if max_length is not None else manifest.max_length
        positions = max_positions(config)
        padded_max = padded_length(self.max_length)
        if positions is not None and padded_max > positions:
            raise CheckpointError(
                f"max_length={self.max_length} (padded to {padded_max}) exceeds the model's "
                f"{positions} positions"
            )
        if self.max_length > manifest.max_length:
            logger.warning(
                "max_length %d is longer than the %d tokens the checkpoint was trained with",
                self.max_length,
                manifest.max_length,
            )
        parameter = next(self.model.parameters())
        self.device: torch.device = parameter.device
        self.dtype: torch.dtype = parameter.dtype
        self.pad_multiple = pad_multiple(self.device.type)
        self.model.eval()
        self._forward: Forward = forward or eager_forward(self.model)
        self.compile_mode: CompileMode = "off"

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def compiled(self) -> bool:
        return self.compile_mode != "off"

    def compile(self, mode: CompileMode) -> None:
        """Run the forward pass through ``torch.compile`` (``off``: eager; see
        ``worker.inference.compilation``). Compilation happens on the first batches: warm up."""
        if mode != "off":
            self._forward = compiled_forward(self.model, mode, self.device.type)
            self.compile_mode = mode

    # -- padding and forward -------------------------------------------------------------

    def pad(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest sequence (rounded up to ``pad_multiple``); tensors on the
        device."""
        padded = self.tokenizer.pad(
            {"input_ids": [list(ids) for ids in sequences]},
            padding=True,
            pad_to_multiple_of=self.pad_multiple,
            padding_side="right",
            return_attention_mask=True,
            return_tensors="pt",
        )
        tensors = (padded[name] for name in ("input_ids", "attention_mask"))
        if self.device.type == "cuda":  # page-locked, so the copies really are asynchronous
            tensors = (tensor.pin_memory() for tensor in tensors)
        return {
            name: tensor.to(self.device, non_blocking=True)
            for name, tensor in zip(("input_ids", "attention_mask"), tensors, strict=True)
        }

    def _score_tensor(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        with torch.inference_mode():
            logits = self._forward(self.pad(sequences))
            return logits.float().sigmoid().cpu().numpy().astype(np.float32, copy=False)

    # -- public scoring ------------------------------------------------------------------

    def score_batch(self, sequences: Sequence[Sequence[int]]) -> ScoredBatch:
        """Score a batch; on out-of-memory split it in halves and retry each half.

        A single sequence that still runs out of memory gets a NaN row and an entry in
        ``errors``; any other exception propagates (it is not the document's fault).
        """
        scored = ScoredBatch(np.full((len(sequences), self.n_labels), np.nan, dtype=np.float32))
        self._score_into(list(sequences), 0, scored)
        return scored

    def score(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """``n_sequences x n_labels`` float32 probabilities; raises if any sequence failed."""
        scored = self.score_batch(sequences)
        if scored.errors:
            index, reason = next(iter(scored.errors.items()))
            raise SequenceFailedError(f"sequence {index}: {reason}")
        return scored.probabilities

    def _score_into(
        self,
        sequences: list[Sequence[int]],
        offset: int,
        scored: ScoredBatch,
    ) -> None:
        if not sequences:
            return
        try:
            scored.probabilities[offset : offset + len(sequences)] = self._score_tensor(sequences)
            return
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # outside the except block, so the traceback no longer pins the failed batch's tensors
        self._release_memory()
        if len(sequences) == 1:
            length = len(sequences[0])
            logger.error("out of memory scoring one sequence of %d tokens", length)
            scored.errors[offset] = f"out of memory scoring a sequence of {length} tokens: {reason}"
            return
        logger.warning("out of memory on a batch of %d; splitting it", len(sequences))
        scored.oom_splits += 1
        half = len(sequences) // 2
        self._score_into(sequences[:half], offset, scored)
        self._score_into(sequences[half:], offset + half, scored)

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- warm-up -------------------------------------------------------------------------

    def warmup_shapes(self, max_batch_tokens: int, max_batch_size: int) -> list[tuple[int, int]]:
        """(batch size, padded length) pairs to run once at start-up.

        Lengths: a few multiples of PAD_MULTIPLE up to max_length; batch sizes: 1 and the
        largest the budget allows (smaller on CPU, where the point is to initialise kernels, not
        to cover every shape).
        """
        top = padded_length(self.max_length)
        lengths = sorted({max(PAD_MULTIPLE, (top // div) // PAD_MULTIPLE * PAD_MULTIPLE)
                          for div in (8, 4, 2, 1)})
        token_cap = max_batch_tokens if self.device.type == "cuda" else min(max_batch_tokens, 1024)
        shapes = []
        for length in lengths:
            largest = max(1, min(max_batch_size, token_cap // length))
            for size in sorted({1, largest}):
                shapes.append((size, length))
        return shapes

    def warmup(
        self, max_batch_tokens: int, max_batch_size: int, time_budget_s: float | None = None
    ) -> int:
        """Run the warm-up shapes; stop early once ``time_budget_s`` is spent. Returns runs."""
        if time_budget_s is None:  # a compiled model compiles its shapes here: all of them
            time_budget_s = math.inf if self.compiled else (
                60.0 if self.device.type == "cuda" else 3.0)
        fill = self.tokenizer.cls_token_id
        if fill is None:
            fill = self.tokenizer.unk_token_id or 0
        started = time.perf_counter()
        runs = 0
        for size, length in self.warmup_shapes(max_batch_tokens, max_batch_size):
            if time.perf_counter() - started > time_budget_s:
                break
            scored = self.score_batch([[fill] * length] * size)
            if scored.errors or not np.isfinite(scored.probabilities).all():
                raise RuntimeError(f"warm-up failed on a batch of {size} x {length} tokens")
            runs += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - started
        logger.info("warm-up: %d batches in %.2fs", runs, elapsed)
        return runs

