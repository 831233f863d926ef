"""Tokenizing documents into complete model windows (truncate and chunk modes)."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from schemas.document import InputDocument  # noqa: E402
from tests.tiny_checkpoint import PoisonedTokenizer, tiny_tokenizer  # noqa: E402
from worker.inference.tokenization import DocumentTokenizer, document_text  # noqa: E402

WORDS = "council regulation on fish milk wine steel trade customs".split()


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def doc(text: str, title: str | None = None, doc_id: str = "d") -> InputDocument:
    return InputDocument(id=doc_id, text=text, title=title)


def words(n: int) -> str:
    # every word is one token of the tiny vocabulary
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


def test_short_document_is_one_complete_window(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=32)
    [result] = stage([doc(words(5))])
    assert result.chunks == 1
    assert not result.truncated
    [window] = result.windows
    assert window[0] == tokenizer.cls_token_id and window[-1] == tokenizer.sep_token_id
    assert window == tokenizer(words(5))["input_ids"]
    assert result.tokens == len(window) == 7


def test_truncate_mode_keeps_the_first_window_and_reports_truncation(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=16, long_documents="truncate")
    [result] = stage([doc(words(40))])
    assert result.chunks == 1
    assert result.truncated
    assert result.tokens == 16
    assert result.windows[0] == tokenizer(words(40), truncation=True, max_length=16)["input_ids"]


def test_exactly_max_length_is_not_truncated(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=16)
    [result] = stage([doc(words(14))])  # 14 + [CLS] + [SEP]
    assert result.tokens == 16
    assert not result.truncated


def test_chunk_mode_windows_overlap_by_the_stride_and_cover_the_text(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=16, long_documents="chunk", stride=4, max_chunks=8)
    text = words(40)
    [result] = stage([doc(text)])
    full = tokenizer(text)["input_ids"][1:-1]  # content tokens without specials
    assert not result.truncated
    assert result.chunks == 4  # 14 new tokens in the first window, 10 in each next one
    assert result.tokens == sum(len(window) for window in result.windows)
    content = []
    for index, window in enumerate(result.windows):
        assert len(window) <= 16
        assert window[0] == tokenizer.cls_token_id and window[-1] == tokenizer.sep_token_id
        body = window[1:-1]
        if index:
            assert body[:4] == content[-4:], "consecutive windows share `stride` tokens"
            body = body[4:]
        content.extend(body)
    assert content == full


def test_chunk_mode_caps_windows_and_reports_truncation(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=16, long_documents="chunk", stride=4, max_chunks=2)
    [result] = stage([doc(words(40))])
    assert result.chunks == 2
    assert result.truncated


def test_title_is_prepended(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=64)
    document = doc("fish milk", title="council regulation")
    assert document_text(document) == "council regulation\nfish milk"
    [result] = stage([document])
    assert result.windows[0] == tokenizer("council regulation\nfish milk")["input_ids"]
    [untitled] = stage([doc("fish milk", title="  ")])
    assert untitled.windows[0] == tokenizer("fish milk")["input_ids"]


def test_raw_text_is_cut_before_tokenizing_and_that_counts_as_truncation(tokenizer):
    # 16 tokens x 1 window x 1 char per token = 16 characters read at most
    stage = DocumentTokenizer(tokenizer, max_length=16, max_chars_per_token=1)
    [result] = stage([doc("a b c d e f g h i j")])  # 19 chars
    # the 16 characters kept are 8 tokens: the tokenizer itself truncated nothing
    assert result.windows[0] == tokenizer("a b c d e f g h ")["input_ids"]
    assert result.tokens == 10
    assert result.truncated
    [whole] = stage([doc("a b c d e f g h")])  # 15 chars: not cut
    assert not whole.truncated


def test_a_group_keeps_document_order(tokenizer):
    stage = DocumentTokenizer(tokenizer, max_length=16, long_documents="chunk", stride=2, max_chunks=4)
    documents = [doc(words(n), doc_id=str(n)) for n in (3, 30, 1, 12)]
    results = stage(documents)
    for document, result in zip(documents, results, strict=True):
        assert result == stage([document])[0]
    assert [r.chunks for r in results] == [1, 3, 1, 1]


def test_tokenize_each_isolates_a_failing_document(tokenizer):
    stage = DocumentTokenizer(PoisonedTokenizer(tokenizer), max_length=16)
    results = stage.tokenize_each([doc("fish"), doc("poison fish"), doc("milk")])
    assert isinstance(results[1], ValueError)
    assert results[0].windows[0] == tokenizer("fish")["input_ids"]
    assert results[2].windows[0] == tokenizer("milk")["input_ids"]


def test_rejects_a_stride_that_leaves_no_new_tokens(tokenizer):
    with pytest.raises(ValueError, match="chunk_stride"):
        DocumentTokenizer(tokenizer, max_length=16, long_documents="chunk", stride=14)
    DocumentTokenizer(tokenizer, max_length=16, long_documents="truncate", stride=14)  # unused
