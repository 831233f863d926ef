"""Build tiny random checkpoints in the exported format, so tests need no downloaded model."""

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from model_training.export import write_checkpoint
from schemas.manifest import CheckpointManifest, Thresholds

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the of and to in for on by with is are be this that which regulation decision directive "
    "council commission european union member states article annex shall market trade customs "
    "agriculture fisheries environment energy transport finance law education science health "
    "products import export duty aid tax bank court rights water fish milk wine steel"
).split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """An uncased WordPiece tokenizer over a few hundred pieces (whole words and characters)."""
    pieces = list(dict.fromkeys(
        SPECIAL_TOKENS
        + WORDS
        + list(string.ascii_lowercase + string.digits + string.punctuation)
        + [f"##{char}" for char in string.ascii_lowercase + string.digits]
    ))
    vocab = {piece: index for index, piece in enumerate(pieces)}
    backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def tiny_model(num_labels: int, max_length: int, vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max(max_length, 64),
        num_labels=num_labels,
        problem_type="multi_label_classification",
    )
    return BertForSequenceClassification(config).eval()


def make_tiny_checkpoint(
    output_dir: Path,
    *,
    label_names: list[str] | None = None,
    max_length: int = 64,
    thresholds: Thresholds | None = None,
    seed: int = 0,
) -> CheckpointManifest:
    """Write a random tiny BERT checkpoint (safetensors + tokenizer + eurovoc.json)."""
    label_names = label_names or [f"label_{index}" for index in range(21)]
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(label_names), max_length, len(tokenizer), seed)
    return write_checkpoint(
        model,
        tokenizer,
        output_dir,
        name="tiny-random-bert",
        version=f"test-{seed}",
        label_names=label_names,
        max_length=max_length,
        base_model="tiny-random-bert",
        thresholds=thresholds,
    )


class PoisonedTokenizer:
    """Delegates to a real tokenizer but fails on any text containing 'poison'."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, texts, **kwargs):
        if any("poison" in text for text in texts):
            raise ValueError("cannot tokenize")
        return self._inner(texts, **kwargs)
