"""Tokenization without padding, its disk cache, dynamic padding and length-grouped batches."""

import numpy as np
import pytest
import torch

from model_training import tokenization
from model_training.batching import (
    SeededLengthGroupedSampler,
    TokenizedDataset,
    padding_collator,
)
from model_training.documents import Document, Split
from model_training.tokenization import char_budget, encode_texts, tokenize_split
from tests.tiny_checkpoint import tiny_tokenizer


def _split(texts: list[str], fingerprint: str = "f1") -> Split:
    documents = [Document(id=str(i), text=t, labels=(i % 3,)) for i, t in enumerate(texts)]
    return Split(name="train", documents=documents, fingerprint=fingerprint, source="memory")


def test_truncates_without_padding_and_cuts_text_to_a_budget():
    tokenizer = tiny_tokenizer()
    long_text = "trade " * 5000
    ids = encode_texts(["milk", long_text], tokenizer, max_length=16)
    assert len(ids[0]) == 3  # [CLS] milk [SEP]
    assert len(ids[1]) == 16
    assert ids[1][0] == tokenizer.cls_token_id and ids[1][-1] == tokenizer.sep_token_id
    assert char_budget(16) < len(long_text)


def test_cache_is_reused_and_keyed(tmp_path, monkeypatch):
    tokenizer = tiny_tokenizer()
    split = _split(["milk wine", "trade customs duty bank", "fish"])
    first = tokenize_split(split, tokenizer, 16, 3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(tokenization, "encode_texts", no_tokenizing)
    again = tokenize_split(split, tokenizer, 16, 3, cache_dir=tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(first.input_ids, again.input_ids, strict=True))
    np.testing.assert_array_equal(first.labels, again.labels)
    monkeypatch.undo()
    tokenize_split(split, tokenizer, 8, 3, cache_dir=tmp_path)
    tokenize_split(_split(["other"], fingerprint="f2"), tokenizer, 16, 3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_collator_pads_to_a_multiple_of_8_or_a_fixed_length():
    tokenizer = tiny_tokenizer()
    dataset = TokenizedDataset(tokenize_split(_split(["milk", "trade " * 10]), tokenizer, 64, 3))
    features = [dataset[0], dataset[1]]
    batch = padding_collator(tokenizer)(features)
    assert batch["input_ids"].shape == (2, 16)  # longest is 12 tokens
    assert batch["attention_mask"][0].sum() == 3
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (2, 3)
    assert padding_collator(tokenizer, pad_to=30)(features)["input_ids"].shape == (2, 30)


def test_length_grouped_order_is_seeded_per_epoch_not_by_the_global_rng():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, 200).tolist()
    sampler = SeededLengthGroupedSampler(lengths, 8, seed=3)
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    assert sorted(epoch2) == list(range(200))
    torch.manual_seed(123)  # what dropout and initialisation do to the global RNG
    assert list(sampler) == epoch2
    assert list(SeededLengthGroupedSampler(lengths, 8, seed=4)) != list(
        SeededLengthGroupedSampler(lengths, 8, seed=3)
    )
    sampler.set_epoch(3)
    assert list(sampler) != epoch2
    # Grouping: lengths within a batch are far closer than in a random batch.
    batches = [epoch2[i : i + 8] for i in range(0, 200, 8)]
    spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in batches])
    shuffled = rng.permutation(200).tolist()
    random_batches = [shuffled[i : i + 8] for i in range(0, 200, 8)]
    random_spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in random_batches])
    assert spread < random_spread / 3


@pytest.mark.parametrize("max_length", [8, 64])
def test_lengths_never_exceed_max_length(max_length):
    split = tokenize_split(_split(["the " * 300, "a"]), tiny_tokenizer(), max_length, 3)
    assert max(split.lengths) <= max_length
