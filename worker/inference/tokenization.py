"""Tokenize documents into model windows (:class:`DocumentTokenizer`), and the text the model
reads of a document (:func:`model_text`, shared with training)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from schemas.document import InputDocument

logger = logging.getLogger(__name__)

TITLE_SEPARATOR = "\n"


def model_text(text: str, title: str | None = None) -> str:
    """The text the model reads: the title, when present, prepended to the text.

    Training reads documents through this function too, so a checkpoint sees in production
    exactly the kind of input it was trained on.
    """
    if title and title.strip():
        return f"{title}{TITLE_SEPARATOR}{text}"
    return text


def document_text(document: InputDocument) -> str:
    return model_text(document.text, document.title)


@dataclass(frozen=True, slots=True)
class TokenizedDocument:
    """A document as the model reads it: its windows of token ids and what they cover."""

    windows: list[list[int]]
    """Token ids of each window, special tokens included, unpadded."""
    tokens: int
    """Tokens the model reads for this document: the sum of window lengths (overlaps included)."""
    truncated: bool
    """True when some of the document's text was not read by any window."""

    @property
    def chunks(self) -> int:
        return len(self.windows)


class DocumentTokenizer:
    """Turns documents into windows of token ids, with a fast (Rust) tokenizer; no padding (the
    model runner pads each batch).

    Every window is a complete model input with its special tokens ([CLS] ... [SEP] for BERT),
    made by the fast tokenizer's own overflow windowing, so scoring one window alone gives
    exactly what it gets inside a batch.

    - ``truncate``: one window, the first ``max_length`` tokens; ``truncated`` says whether
      anything after it was not read.
    - ``chunk``: up to ``max_chunks`` windows of ``max_length`` tokens, consecutive windows
      sharing ``stride`` tokens; ``truncated`` says whether text after the last window was not
      read. ``stride`` must leave room for new tokens next to the tokenizer's special tokens:
      this is the one place that checks it against their real number.

    Before tokenizing, raw text is cut to ``max_length x windows x max_chars_per_token``
    characters (a cut counts as truncation), which bounds the tokenizer's time and memory per
    document.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        long_documents: Literal["truncate", "chunk"] = "truncate",
        stride: int = 64,
        max_chunks: int = 8,
        max_chars_per_token: int = 12,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the document tokenizer needs a fast tokenizer")
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        if max_length <= specials:
            raise ValueError(f"max_length={max_length} leaves no room next to {specials} specials")
        self.max_windows = max_chunks if long_documents == "chunk" else 1
        self.stride = stride if long_documents == "chunk" else 0
        if self.max_windows > 1 and self.stride >= max_length - specials:
            raise ValueError(
                f"chunk_stride={stride} must be smaller than max_length={max_length} minus "
                f"{specials} special tokens"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.long_documents = long_documents
        self.max_chars = max_length * self.max_windows * max_chars_per_token

    def __call__(self, documents: Sequence[InputDocument]) -> list[TokenizedDocument]:
        """Tokenize a group of documents in one tokenizer call (raises if the call fails)."""
        if not documents:
            return []
        texts, cut = [], []
        for document in documents:
            text = document_text(document)
            cut.append(len(text) > self.max_chars)
            texts.append(text[: self.max_chars])
        encoding = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        windows: list[list[list[int]]] = [[] for _ in documents]
        for ids, index in zip(
            encoding["input_ids"], encoding["overflow_to_sample_mapping"], strict=True
        ):
            windows[index].append(ids)
        results = []
        for doc_windows, was_cut in zip(windows, cut, strict=True):
            kept = doc_windows[: self.max_windows]
            results.append(
                TokenizedDocument(
                    windows=kept,
                    tokens=sum(len(window) for window in kept),
                    truncated=was_cut or len(doc_windows) > len(kept),
                )
            )
        return results

    def tokenize_each(
        self, documents: Sequence[InputDocument]
    ) -> list[TokenizedDocument | Exception]:
        """Like ``__call__``, but a document that fails gets its exception instead of a result.

        Tries the whole group in one call first and falls back to one call per document only
        when the group call fails.
        """
        try:
            return list(self(documents))
        except Exception:  # noqa: BLE001 - isolate the failing document below
            logger.warning("group tokenization failed; retrying document by document")
        results: list[TokenizedDocument | Exception] = []
        for document in documents:
            try:
                results.append(self([document])[0])
            except Exception as exc:  # noqa: BLE001 - a per-document failure
                results.append(exc)
        return results
