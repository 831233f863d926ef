"""Batches: dynamic padding to a multiple of PAD_MULTIPLE, length-grouped order reproducible
per epoch."""

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import get_length_grouped_indices

from model_training.tokenization import TokenizedSplit
from worker.inference.batching import PAD_MULTIPLE


class TokenizedDataset(Dataset[dict[str, Any]]):
    """``{input_ids, labels}`` per document, as the Trainer and the collator take them."""

    def __init__(self, split: TokenizedSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "input_ids": self.split.input_ids[index].tolist(),
            "labels": self.split.labels[index],
        }


def padding_collator(
    tokenizer: PreTrainedTokenizerBase, pad_to: int | None = None
) -> DataCollatorWithPadding:
    """Pad each batch to its longest document rounded up to ``PAD_MULTIPLE`` (tensor-core
    friendly), or every batch to ``pad_to`` tokens (the original notebook's fixed padding)."""
    return DataCollatorWithPadding(
        tokenizer,
        padding="max_length" if pad_to else "longest",
        max_length=pad_to,
        pad_to_multiple_of=None if pad_to else PAD_MULTIPLE,
        return_tensors="pt",
    )


class SeededLengthGroupedSampler(Sampler[int]):
    """transformers' length grouping (random mega-batches, each sorted by length), drawn from a
    generator seeded by (seed, epoch) instead of the global RNG.

    The Trainer calls ``set_epoch`` before each epoch, so every process of a distributed run
    draws the same order (the launcher then gives each process its own batches) and a resumed
    run skips into exactly the order the interrupted one was following.
    """

    def __init__(self, lengths: list[int], group_size: int, *, seed: int) -> None:
        self.lengths = lengths
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.group_size, generator=generator))
