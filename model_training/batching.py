"""Batches: dynamic padding and length-grouped, resumable batch order."""

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import get_length_grouped_indices

from model_training.tokenization import TokenizedSplit

PAD_TO_MULTIPLE_OF = 8


class TokenizedDataset(Dataset[dict[str, np.ndarray]]):
    def __init__(self, split: TokenizedSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.split.features(index)


class Collator:
    """Pad ``input_ids`` to the batch's longest (a multiple of 8) and stack the label rows."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to: int | None = None) -> None:
        self.pad = DataCollatorWithPadding(
            tokenizer,
            padding="max_length" if pad_to else "longest",
            max_length=pad_to,
            pad_to_multiple_of=None if pad_to else PAD_TO_MULTIPLE_OF,
            return_tensors="pt",
        )

    def __call__(self, features: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        batch = self.pad([{"input_ids": feature["input_ids"].tolist()} for feature in features])
        batch["labels"] = torch.from_numpy(np.stack([feature["labels"] for feature in features]))
        return dict(batch)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length documents, reproducible from (seed, epoch).

    Uses transformers' ``get_length_grouped_indices`` (random mega-batches sorted by length).
    ``set_epoch(epoch, skip=k)`` starts that epoch's fixed batch order at batch ``k``, so a resumed
    run continues with exactly the batches an uninterrupted run would have seen.
    """

    def __init__(
        self, lengths: list[int], batch_size: int, *, seed: int, group_by_length: bool = True
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0
        self.skip = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) - self.skip

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.group_by_length:
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        else:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        for start in range(self.skip * self.batch_size, len(order), self.batch_size):
            yield order[start : start + self.batch_size]


def eval_loader(
    split: TokenizedSplit, tokenizer: PreTrainedTokenizerBase, batch_size: int
) -> tuple[DataLoader, np.ndarray]:
    """Batches of documents sorted by length (least padding) and the order to undo it."""
    order = np.argsort(np.asarray(split.lengths), kind="stable")[::-1].copy()
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    loader = DataLoader(
        TokenizedDataset(split), batch_sampler=batches, collate_fn=Collator(tokenizer)
    )
    return loader, order
