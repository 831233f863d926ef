"""Training settings: one frozen pydantic-settings model; profiles are named presets over it.

Sources, highest priority first: ``eurovoc-train train`` flags (generated from the fields),
keyword arguments, ``EUROVOC_TRAIN_*`` environment variables (``EUROVOC_TRAIN_EPOCHS=3``), the
profile's preset, the defaults below. The prefix is not the worker's ``EUROVOC_``, so a worker's
``EUROVOC_MAX_LENGTH`` or ``EUROVOC_DEVICE`` never changes a training run.
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_training.errors import DataError
from model_training.tokenization import cache_root

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path("..") / "shared" / "data" / "eurlex57k"
ENV_PREFIX = "EUROVOC_TRAIN_"

PROFILES: dict[str, dict[str, Any]] = {
    # The production model: MPNet-base at 512 tokens for up to 5 epochs; needs a GPU. The batch is
    # per device: 16 x 2 accumulated = 32 on one GPU, 32 x N on N processes.
    "gpu": {
        "base_model": "mpnet",
        "max_length": 512,
        "batch_size": 16,
        "grad_accum": 2,
        "eval_batch_size": 64,
        "learning_rate": 3e-5,
        "epochs": 5,
        "patience": 2,
        "warmup_ratio": 0.1,
    },
    # A quick demo model: MiniLM at 128 tokens on the newest training documents, within 10 minutes
    # of training on 2 CPU cores (tokenization included, evaluation not); bf16 where the CPU
    # computes it natively, which doubles the documents it reads in that time. Measured on 2 cores
    # (README, "Results"): 9,600 documents fill the budget in bf16; sqrt positive weights raised
    # dev macro-F1 0.365 -> 0.544 and micro-F1 0.693 -> 0.758; LR 2e-4 gave the best dev micro-F1.
    "cpu-quick": {
        "base_model": "minilm",
        "max_length": 128,
        "batch_size": 16,
        "grad_accum": 1,
        "eval_batch_size": 64,
        "learning_rate": 2e-4,
        "epochs": 1,
        "warmup_ratio": 0.06,
        "pos_weight": "sqrt",
        "train_subset": 9600,
        "subset_strategy": "recent",
        "device": "cpu",
        "threads": 2,
        "max_train_seconds": 600,
    },
}


class TrainConfig(BaseSettings):
    """Settings of ``eurovoc-train train``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        protected_namespaces=(),
    )

    profile: Literal["gpu", "cpu-quick"] | None = Field(
        None,
        description="preset of the settings below (flags and EUROVOC_TRAIN_* variables override "
        "it): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{key}={value}" for key, value in preset.items())
            for name, preset in PROFILES.items()
        ),
    )
    base_model: str = Field("minilm", description="'minilm', 'mpnet' or a local model directory")
    data: str | None = Field(
        None,
        description="data directory, JSONL file or hf:NAME[:CONFIG] "
        "(default ../shared/data/eurlex57k)",
    )
    labels: str | None = Field(
        None, description="labels file; default: the data directory's, else the 21 level-1 labels"
    )
    max_length: int = Field(512, ge=8, description="tokens per document (truncated)")
    batch_size: int = Field(16, ge=1, description="training documents per batch and process")
    grad_accum: int = Field(1, ge=1, description="batches per optimizer step")
    eval_batch_size: int = Field(64, ge=1, description="evaluation documents per batch")
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay (not on biases, LayerNorm)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps with LR warm-up")
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: int = Field(5, ge=1)
    patience: int = Field(2, ge=1, description="epochs without dev micro-F1 gain before stopping")
    seed: int = 42
    train_subset: int | None = Field(None, ge=1, description="train on at most this many documents")
    subset_strategy: Literal["random", "recent"] = Field(
        "random", description="which documents the subset keeps: a random sample or the newest"
    )
    group_by_length: bool = Field(True, description="batch documents of similar length together")
    pos_weight: Literal["none", "sqrt"] = Field(
        "none",
        description="BCE weight of each label's positives: sqrt = sqrt(negatives / positives) "
        "in the training documents",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on CUDA (fp16 without bf16), bf16 on a CPU with native bf16 "
        "(AVX512-BF16 or AMX), else fp32",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when present; pick GPUs with CUDA_VISIBLE_DEVICES"
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process")
    max_train_seconds: float | None = Field(
        None,
        gt=0,
        description="stop every process at the same step after this long (tokenization "
        "included, evaluation not)",
    )
    stop_after_steps: int | None = Field(
        None, ge=1, description="save resumable state and stop after this many optimizer steps"
    )
    save_state_every: int = Field(200, ge=1, description="optimizer steps between resume states")
    log_every: int = Field(50, ge=1, description="optimizer steps between progress log lines")
    min_positives: int = Field(
        20, ge=1, description="dev positives a label needs for its own threshold"
    )
    at_least_one: Literal["auto", "on", "off"] = Field(
        "auto", description="predict the top label when none passes (auto: if it helps dev)"
    )
    name: str | None = Field(
        None, description="checkpoint name (default: eurovoc-<model>-<profile>)"
    )
    version: str | None = Field(None, description="checkpoint version (default: UTC date and time)")

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """Fill the settings nobody gave from the profile's preset."""
        if not isinstance(data, dict):
            return data
        profile = data.get("profile")
        if profile is None:
            return data
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        return {**PROFILES[profile], **data}


def default_data_dir() -> Path | None:
    """``../shared/data/eurlex57k`` from the working directory or the repository root."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / SHARED_DATA).resolve()
        if candidate.is_dir():
            return candidate
    return None


def data_or_default(data: str | None) -> str:
    """``data`` when given, else the default data directory (``DataError`` when there is none)."""
    if data is not None:
        return data
    default = default_data_dir()
    if default is None:
        raise DataError("no --data given and ../shared/data/eurlex57k does not exist")
    return str(default)


def default_output_dir(profile: str | None) -> Path:
    """``${EUROVOC_CACHE:-~/.cache/eurovoc-stream}/models/<profile>`` (the demo's model cache)."""
    return cache_root() / "models" / (profile or "custom")
