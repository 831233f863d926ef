"""Tokenize splits without padding, truncated at ``max_length``, and cache them on disk.

Raw text is first cut to a character budget (``max_length`` times ``CHARS_PER_TOKEN``): a document
of 20k characters costs the tokenizer no more than one of the budget, and a budget that generous
still fills ``max_length`` tokens. The cache is keyed by the tokenizer's full definition, the
maximum length, the budget and the split's data fingerprint.
"""

import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from model_training.documents import Split
from worker.inference.engine_settings import EngineSettings

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = EngineSettings.model_fields["max_chars_per_token"].default
TOKENIZE_CHUNK = 1024


def cache_root() -> Path:
    """``${EUROVOC_CACHE:-~/.cache/eurovoc-stream}``."""
    return Path(os.environ.get("EUROVOC_CACHE", Path.home() / ".cache" / "eurovoc-stream"))


def char_budget(max_length: int) -> int:
    return max_length * CHARS_PER_TOKEN


@dataclass(frozen=True)
class TokenizedSplit:
    """Token ids of every document (no padding) and the multi-hot label matrix."""

    input_ids: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def features(self, index: int) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's definition, without the truncation/padding state calls leave."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        definition = repr(sorted(tokenizer.get_vocab().items()))
    else:
        spec = json.loads(backend.to_str())
        definition = json.dumps(
            {k: v for k, v in spec.items() if k not in ("truncation", "padding")}, sort_keys=True
        )
    return hashlib.sha256(definition.encode("utf-8")).hexdigest()[:16]


def encode_texts(
    texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[np.ndarray]:
    """Token ids of each text (special tokens included), cut at ``max_length``."""
    budget = char_budget(max_length)
    encoded: list[np.ndarray] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = [text[:budget] for text in texts[start : start + TOKENIZE_CHUNK]]
        batch = tokenizer(chunk, truncation=True, max_length=max_length, padding=False)
        encoded.extend(np.asarray(ids, dtype=np.int32) for ids in batch["input_ids"])
    return encoded


def tokenize_split(
    split: Split,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    num_labels: int,
    *,
    cache_dir: Path | None = None,
) -> TokenizedSplit:
    """Tokenize ``split``, reading and writing ``cache_dir`` when one is given."""
    labels = split.label_matrix(num_labels)
    cache_file = None
    if cache_dir is not None:
        key = "|".join(
            (
                tokenizer_fingerprint(tokenizer),
                str(max_length),
                str(char_budget(max_length)),
                split.fingerprint,
            )
        )
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"{split.name}-{digest}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as stored:
                ids = np.split(stored["ids"], stored["offsets"][1:-1])
            if len(ids) == len(split):
                logger.info("tokenized %s from cache %s", split.name, cache_file)
                return TokenizedSplit(input_ids=ids, labels=labels)
    ids = encode_texts([document.model_text for document in split.documents], tokenizer, max_length)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(row) for row in ids])
        # One partial file per process: processes that fill a shared cache never mix their bytes.
        partial = cache_file.with_suffix(f".{socket.gethostname()}-{os.getpid()}.tmp.npz")
        np.savez(partial, ids=np.concatenate(ids), offsets=offsets)
        partial.replace(cache_file)
    logger.info("tokenized %d %s documents", len(ids), split.name)
    return TokenizedSplit(input_ids=ids, labels=labels)
