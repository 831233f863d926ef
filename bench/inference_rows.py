"""The rows of ``bench/inference.py``: one way of scoring documents each, measured the same way.

Every row gets the same documents (``LabelledDocument``: an ``InputDocument`` and its true label
ids) and returns a :class:`RowResult`: the probabilities of every document (documents x labels,
in input order) and one record per model batch (latency, real tokens, padded tokens), from which
``bench/inference.py`` computes docs/s, tokens/s, padding efficiency, latency percentiles and
micro-F1. Model loading and warm-up are outside the timed part of every row.

- ``naive``: a transformers ``pipeline`` called once per document, fp32: how a first worker
  would be written.
- ``notebook``: the original notebook's way: fixed padding to the max length, batches of 16 in
  input order, fp32.
- ``engine``: the worker's ``InferenceEngine`` (token-budget micro-batching, dynamic padding, its
  tokenizer thread), through ``worker.inference.batch_scoring`` (at most ``max_in_flight`` pending), the
  path ``eurovoc-train evaluate`` and threshold tuning take.
"""

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from schemas.document import InputDocument
from schemas.document_files import (
    document_lines,
    parse_document_line,
    source_name,
)
from worker.inference.engine_settings import EngineSettings, dtype_name
from worker.inference.tokenization import document_text

NOTEBOOK_BATCH = 16


@dataclass(frozen=True, slots=True)
class LabelledDocument:
    document: InputDocument
    labels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    seconds: float
    tokens: int  # real tokens the model read
    padded_tokens: int  # tokens the model computed (padding included)
    sequences: int


@dataclass
class RowResult:
    probabilities: np.ndarray
    batches: list[Batch]
    seconds: float  # wall time of the timed part
    load_seconds: float
    dtype: str
    torch_threads: int
    extra: dict = field(default_factory=dict)


class MachineWindow:
    """CPU seconds the rest of the machine used while a row was timed (the machine is shared):
    ``/proc/stat`` busy time minus this process's own CPU time, per second of wall time."""

    def __enter__(self) -> "MachineWindow":
        self.start = (time.perf_counter(), _machine_busy_seconds(), time.process_time())
        return self

    def __exit__(self, *exc_info) -> None:
        wall, busy, own = (end - start for end, start in zip(
            (time.perf_counter(), _machine_busy_seconds(), time.process_time()), self.start,
            strict=True))
        self.other_cores = round(max(0.0, busy - own) / wall, 3) if busy is not None else None


def _machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def read_labelled(path: Path, limit: int | None = None) -> list[LabelledDocument]:
    """The first ``limit`` documents of a JSONL(.gz) file with their ``labels`` (label ids)."""
    out: list[LabelledDocument] = []
    source = source_name(path)
    for number, line in document_lines(path):
        if limit is not None and len(out) >= limit:
            break
        labels = orjson.loads(line).get("labels")
        if not isinstance(labels, list):
            raise ValueError(f"{source}:{number}: no 'labels' list: a benchmark needs labels")
        out.append(LabelledDocument(parse_document_line(line, source, number), tuple(labels)))
    return out


def titles_only(documents: Sequence[LabelledDocument]) -> list[LabelledDocument]:
    """The same documents reduced to their titles (the short half of the mixed stream)."""
    out = []
    for item in documents:
        title = (item.document.title or "").strip() or item.document.text[:200]
        short = item.document.model_copy(update={"id": f"{item.document.id}#title",
                                                 "title": None, "text": title})
        out.append(LabelledDocument(short, item.labels))
    return out


def mixed_stream(documents: Sequence[LabelledDocument]) -> list[LabelledDocument]:
    """Half full documents, half titles only, interleaved (same total count)."""
    half = len(documents) // 2
    shorts = titles_only(documents[half:])
    mixed: list[LabelledDocument] = []
    for full, short in zip(documents[:half], shorts, strict=False):
        mixed += [full, short]
    mixed += shorts[len(documents[:half]):]
    return mixed


# -- the baselines ---------------------------------------------------------------------------


def _load_fp32(model_dir: Path, device: str):
    import torch

    from worker.inference.checkpoint import load_checkpoint

    return load_checkpoint(model_dir, device=device, dtype=torch.float32)


def run_naive(model_dir: Path, max_length: int, documents: Sequence[LabelledDocument],
              threads: int, device: str = "cpu") -> RowResult:
    """A ``text-classification`` pipeline called once per document (sigmoid, every label)."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    started = time.perf_counter()
    checkpoint = _load_fp32(model_dir, device)
    classifier = pipeline("text-classification", model=checkpoint.model,
                          tokenizer=checkpoint.tokenizer, device=device,
                          function_to_apply="sigmoid", top_k=None)
    names = checkpoint.manifest.label_names
    index = {name: i for i, name in enumerate(names)}
    tokenizer = checkpoint.tokenizer
    texts = [document_text(item.document) for item in documents]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)
               ["input_ids"]]
    classifier(texts[0], truncation=True, max_length=max_length)  # warm-up
    load_seconds = time.perf_counter() - started
    probabilities = np.zeros((len(texts), len(names)), dtype=np.float32)
    batches = []
    window = MachineWindow().__enter__()
    run_started = time.perf_counter()
    for row, (text, length) in enumerate(zip(texts, lengths, strict=True)):
        t0 = time.perf_counter()
        scores = classifier(text, truncation=True, max_length=max_length)
        if scores and isinstance(scores[0], list):  # some versions nest one list per input
            scores = scores[0]
        for score in scores:
            probabilities[row, index[score["label"]]] = score["score"]
        batches.append(Batch(time.perf_counter() - t0, length, length, 1))
    seconds = time.perf_counter() - run_started
    window.__exit__()
    return RowResult(probabilities, batches, seconds, load_seconds, "float32", threads,
                     {"other_processes_cores": window.other_cores})


def run_notebook(model_dir: Path, max_length: int, documents: Sequence[LabelledDocument],
                 threads: int, device: str = "cpu") -> RowResult:
    """Fixed padding to ``max_length``, batches of 16 in input order, fp32 (the notebook)."""
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    checkpoint = _load_fp32(model_dir, device)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    texts = [document_text(item.document) for item in documents]

    def score(chunk: list[str]) -> tuple[np.ndarray, int]:
        encoded = tokenizer(chunk, truncation=True, max_length=max_length,
                            padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=encoded["input_ids"].to(device),
                           attention_mask=encoded["attention_mask"].to(device)).logits
        return torch.sigmoid(logits.float()).cpu().numpy(), int(encoded["attention_mask"].sum())

    score(texts[:NOTEBOOK_BATCH])  # warm-up
    load_seconds = time.perf_counter() - started
    rows, batches = [], []
    window = MachineWindow().__enter__()
    run_started = time.perf_counter()
    for start in range(0, len(texts), NOTEBOOK_BATCH):
        chunk = texts[start:start + NOTEBOOK_BATCH]
        t0 = time.perf_counter()
        probabilities, real = score(chunk)
        batches.append(Batch(time.perf_counter() - t0, real, len(chunk) * max_length, len(chunk)))
        rows.append(probabilities)
    seconds = time.perf_counter() - run_started
    window.__exit__()
    return RowResult(np.concatenate(rows), batches, seconds, load_seconds, "float32", threads,
                     {"other_processes_cores": window.other_cores})


# -- the engine ------------------------------------------------------------------------------


def _thread_cpu_seconds(native_id: int | None) -> float | None:
    if native_id is None:
        return None
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _recording(runner, batches: list[Batch]) -> Callable:
    """``runner.score_batch`` that also records each batch's latency and tokens."""
    score_batch, multiple = runner.score_batch, runner.pad_multiple

    def timed(sequences):
        t0 = time.perf_counter()
        scored = score_batch(sequences)
        longest = max(len(ids) for ids in sequences)
        padded = -(-longest // multiple) * multiple * len(sequences)
        batches.append(Batch(time.perf_counter() - t0, sum(map(len, sequences)), padded,
                             len(sequences)))
        return scored

    return timed


def run_engine(settings: EngineSettings, documents: Sequence[LabelledDocument]) -> RowResult:
    """The worker's engine over the documents, fed as ``classify`` feeds it
    (``worker.inference.batch_scoring``, the path evaluation and threshold tuning take)."""
    import torch

    from worker.inference.batch_scoring import score_documents
    from worker.inference.engine import InferenceEngine
    from worker.inference.engine_metrics import EngineMetrics

    metrics = EngineMetrics()
    started = time.perf_counter()
    engine = InferenceEngine.from_settings(settings, metrics)
    load_seconds = time.perf_counter() - started
    batches: list[Batch] = []
    engine.runner.score_batch = _recording(engine.runner, batches)
    engine.start()
    tokenizer_thread = engine.threads["tokenize"]
    cpu_before = _thread_cpu_seconds(tokenizer_thread.native_id)
    try:
        window = MachineWindow().__enter__()
        run_started = time.perf_counter()
        probabilities = score_documents(
            engine, [labelled.document for labelled in documents], progress=False
        )
        seconds = time.perf_counter() - run_started
        window.__exit__()
        cpu_after = _thread_cpu_seconds(tokenizer_thread.native_id)
    finally:
        engine.stop()
    tokenize = metrics.tokenize_seconds.collect()[0].samples
    tokenize_busy = next(s.value for s in tokenize if s.name.endswith("_sum"))
    model_busy = sum(batch.seconds for batch in batches)
    extra = {
        "max_batch_tokens": engine.max_batch_tokens,
        "other_processes_cores": window.other_cores,
        "tokenizer_thread": {
            "busy_share": round(tokenize_busy / seconds, 4),
            "idle_share": round(1 - tokenize_busy / seconds, 4),
            "cpu_seconds": None if cpu_before is None else round(cpu_after - cpu_before, 3),
        },
        "inference_thread": {"busy_share": round(model_busy / seconds, 4),
                             "idle_share": round(1 - model_busy / seconds, 4)},
    }
    return RowResult(probabilities, batches, seconds, load_seconds,
                     dtype_name(engine.runner.dtype), torch.get_num_threads(),
                     extra)
