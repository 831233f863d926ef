"""Settings of the inference engine (:class:`EngineSettings`) and what they resolve to on this
machine (device, dtype, torch threads)."""

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.inference.aggregation import Aggregation
from worker.inference.batching import PAD_MULTIPLE, padded_length
from worker.inference.compilation import CompileMode
from worker.inference.cpu_resources import cpu_computes_bf16, usable_cpus

if TYPE_CHECKING:  # torch is imported where a device is resolved, not by the command line
    import torch

CUDA_BATCH_TOKENS = 16384
CPU_BATCH_TOKENS = 4096
"""Default batch budgets: on a CPU, documents/s are the same from ~32 x 128 tokens up (see
docs/performance.md), so bigger batches only add latency; a GPU needs large batches."""


class EngineSettings(BaseModel):
    """How the worker loads the model and batches documents through it.

    A plain frozen pydantic model, so that it can be built directly in tests; it is the
    ``engine`` group of the Kafka worker's settings (``worker.settings.worker_settings``) and the
    settings of ``eurovoc-worker classify`` (``worker.commands.classify``), whose command lines
    pydantic-settings generates. Relations that need the checkpoint (``max_length=None`` means
    "the manifest's") are checked again by :meth:`resolve_max_length` once the manifest is
    known; what needs the tokenizer (the special tokens next to ``chunk_stride``) is checked by
    the engine's ``DocumentTokenizer``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Path = Field(description="Checkpoint directory (eurovoc.json, safetensors, tokenizer).")
    device: str = Field(
        default="auto",
        min_length=1,
        description='Torch device: "auto" (cuda when available, else cpu), "cpu", "cuda", '
        '"cuda:1".',
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description='Compute dtype; "auto" is bfloat16 on CUDA and on CPUs with native bf16 '
        "arithmetic (AVX512-BF16, AMX), float32 on other CPUs.",
    )
    max_batch_tokens: int | None = Field(
        default=None,
        ge=PAD_MULTIPLE,
        description="Padded-token budget of one model batch (longest sequence x sequences); "
        f"default: {CUDA_BATCH_TOKENS} on CUDA, {CPU_BATCH_TOKENS} on CPU (where larger batches "
        "gain no throughput, only latency), at least one sequence of max_length.",
    )
    max_batch_size: int = Field(default=64, ge=1, description="Most sequences in one model batch.")
    max_wait_ms: int = Field(
        default=20,
        ge=0,
        description="Longest a sequence waits for a fuller batch, counted from its arrival.",
    )
    max_length: int | None = Field(
        default=None,
        ge=PAD_MULTIPLE,
        description="Tokens per sequence (special tokens included); default: the checkpoint's.",
    )
    long_documents: Literal["truncate", "chunk"] = Field(
        default="truncate",
        description='Documents longer than max_length: "truncate" reads the first window only, '
        '"chunk" scores up to max_chunks overlapping windows and aggregates them.',
    )
    chunk_stride: int = Field(
        default=64, ge=0, description="Tokens shared by consecutive windows in chunk mode."
    )
    max_chunks: int = Field(default=4, ge=1, description="Most windows per document in chunk mode.")
    chunk_aggregation: Aggregation = Field(
        default="first-max",
        description='How window probabilities combine into the document\'s: "first-max" (mean of '
        'the first window and the max over windows), "max" or "mean".',
    )
    max_chars_per_token: int = Field(
        default=12,
        ge=1,
        description="Raw text is cut to max_length x windows x this many characters before "
        "tokenizing, so a huge document cannot stall the tokenizer.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="The capacity knob in documents (max_in_flight_bytes is the one in bytes): "
        "documents the model stage holds (queued, "
        "tokenized, batched, being scored, scored but not yet handed on). At this bound the "
        "Kafka worker pauses its partitions (polling goes on) until there is room again.",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch.set_num_threads for CPU inference; default: the cores the process may "
        "use (affinity mask capped by the cgroup CPU quota).",
    )
    warmup: bool = Field(
        default=True, description="Run the model over the padded shapes once at start-up."
    )
    torch_compile: CompileMode = Field(
        default="off",
        description='torch.compile the model: "off" (eager), "default" (Inductor, dynamic '
        'shapes), "reduce-overhead" (+ CUDA graphs; CUDA only), "max-autotune". Compiles at '
        "warm-up.",
    )

    @model_validator(mode="after")
    def _check_relations(self) -> "EngineSettings":
        if self.max_length is not None:
            self.check_max_length(self.max_length)
        return self

    def check_max_length(self, max_length: int) -> None:
        """Raise ``ValueError`` when ``max_length`` does not fit the batching settings."""
        padded = padded_length(max_length)
        if self.max_batch_tokens is not None and self.max_batch_tokens < padded:
            raise ValueError(
                f"max_batch_tokens={self.max_batch_tokens} cannot hold one sequence of "
                f"max_length={max_length} (padded to {padded})"
            )
        # only what can never work: the tokenizer, which knows how many special tokens each
        # window holds, checks the rest (``DocumentTokenizer``)
        if self.long_documents == "chunk" and self.chunk_stride >= max_length:
            raise ValueError(
                f"chunk_stride={self.chunk_stride} must be smaller than max_length={max_length} "
                "minus the special tokens"
            )

    def resolve_max_length(self, manifest_max_length: int) -> int:
        """The sequence length in effect: the setting, else the checkpoint's; validated."""
        max_length = self.max_length if self.max_length is not None else manifest_max_length
        self.check_max_length(max_length)
        return max_length

    def resolve_batch_tokens(self, device_type: str, max_length: int) -> int:
        """The batch budget in effect: the setting, else the device's default (at least one
        padded sequence of ``max_length``)."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        default = CUDA_BATCH_TOKENS if device_type == "cuda" else CPU_BATCH_TOKENS
        return max(default, padded_length(max_length))

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0


def resolve_device(device: str) -> "torch.device":
    """``"auto"`` → cuda when available, else cpu; anything else is parsed by torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available")
    return resolved


def resolve_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    """``"auto"`` → bfloat16 on CUDA (float16 where bf16 is unsupported) and on CPUs that compute
    bf16 natively, float32 elsewhere."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_computes_bf16() else torch.float32


def resolve_torch_threads(torch_threads: int | None) -> int:
    """The setting, else the cores this process may use."""
    return torch_threads if torch_threads is not None else usable_cpus()


def dtype_name(dtype: "torch.dtype") -> str:
    """A torch dtype as the settings, manifests and reports write it: ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")
