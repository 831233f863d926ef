"""What a training run reads: the splits, the label set, the base model's tokenizer, and every
split tokenized (through the disk cache)."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from model_training.base_models import ResolvedModel, load_tokenizer, resolve_base_model
from model_training.documents import (
    HF_PREFIX,
    Split,
    label_set_for_data,
    load_split,
    resolve_split_path,
)
from model_training.errors import DataError
from model_training.labels import LabelSet
from model_training.profiles import TrainConfig, data_or_default
from model_training.tokenization import TokenizedSplit, cache_root, tokenize_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    label_set: LabelSet
    base: ResolvedModel
    tokenizer: PreTrainedTokenizerBase
    splits: dict[str, Split]
    """``train`` (after the subset), ``dev`` and, when the data has one, ``test``."""
    tokenized: dict[str, TokenizedSplit]
    """``train`` and ``dev``, for the Trainer (the end of training scores dev and test through the
    worker's engine, which tokenizes for itself)."""
    seconds: float

    @property
    def train(self) -> TokenizedSplit:
        return self.tokenized["train"]

    @property
    def dev(self) -> TokenizedSplit:
        return self.tokenized["dev"]

    @property
    def test(self) -> Split | None:
        return self.splits.get("test")

    def fingerprints(self) -> dict[str, str]:
        """Content fingerprint of every split read, by split name."""
        return {name: split.fingerprint for name, split in self.splits.items()}

    def training_fingerprint(self) -> str:
        return ";".join(f"{name}={self.splits[name].fingerprint}" for name in ("train", "dev"))


def load_training_data(config: TrainConfig) -> TrainingData:
    """Read and tokenize every split (a cache hit skips the tokenizer)."""
    started = time.monotonic()
    data = data_or_default(config.data)
    label_set = label_set_for_data(data, config.labels)
    splits = {
        "train": load_split(data, "train", label_set).subset(
            config.train_subset, strategy=config.subset_strategy, seed=config.seed
        ),
        "dev": load_split(data, "dev", label_set),
    }
    if _has_test_split(data):
        splits["test"] = load_split(data, "test", label_set)
    base = resolve_base_model(config.base_model)
    tokenizer = load_tokenizer(base.path)
    cache = cache_root() / "tokenized"
    tokenized = {
        name: tokenize_split(split, tokenizer, config.max_length, len(label_set), cache_dir=cache)
        for name, split in splits.items()
        if name != "test"
    }
    logger.info(
        "data: %s documents, %d labels (%s)",
        ", ".join(f"{len(split)} {name}" for name, split in splits.items()),
        len(label_set),
        label_set.source,
    )
    return TrainingData(
        label_set=label_set,
        base=base,
        tokenizer=tokenizer,
        splits=splits,
        tokenized=tokenized,
        seconds=time.monotonic() - started,
    )


def _has_test_split(data: str) -> bool:
    if data.startswith(HF_PREFIX):
        return True
    try:
        resolve_split_path(Path(data), "test")
    except DataError:
        return False
    return True
