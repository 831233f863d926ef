"""Score a list of documents with the worker's engine, in-process: the probabilities the Kafka
worker computes, in input order.

``eurovoc-train evaluate``, threshold tuning (``tune-thresholds`` and the end of training) and
``bench/inference.py`` measure through :func:`score_documents`, so the quality they report is the
quality of the worker's inference path: its document tokenizer, token-budget batching, dtype, max
length, long-document mode and chunk aggregation. :func:`inference_record` says which settings
that was; training writes it into the manifest next to the thresholds tuned with it.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from schemas.document import InputDocument
from schemas.manifest import InferenceRecord
from worker.inference.engine import InferenceEngine
from worker.inference.engine_settings import EngineSettings, dtype_name
from worker.inference.feeding import feed
from worker.inference.requests import DocumentRequest


class DocumentNotScored(ValueError):
    """A document the engine could not score (it would be a dead letter in the worker)."""


@contextmanager
def running_engine(settings: EngineSettings) -> Iterator[InferenceEngine]:
    """An engine loaded from ``settings`` and started; stopped on the way out. Without warm-up:
    it only spares the first batches' latency, and scoring a file has no latency to keep."""
    engine = InferenceEngine.from_settings(settings.model_copy(update={"warmup": False}))
    with engine:
        yield engine


def inference_record(engine: InferenceEngine) -> InferenceRecord:
    """The inference settings in effect in ``engine`` (``auto`` values resolved)."""
    settings = engine.settings
    chunked = settings.long_documents == "chunk"
    return InferenceRecord(
        device=engine.runner.device.type,
        dtype=dtype_name(engine.runner.dtype),
        max_length=engine.max_length,
        long_documents=settings.long_documents,
        max_chunks=settings.max_chunks if chunked else None,
        chunk_stride=settings.chunk_stride if chunked else None,
        chunk_aggregation=settings.chunk_aggregation if chunked else None,
    )


def score_documents(
    engine: InferenceEngine,
    documents: Sequence[InputDocument],
    *,
    description: str = "scoring",
    progress: bool | None = None,
) -> np.ndarray:
    """Probabilities (documents x labels, float32, input order) from a started engine, fed as
    ``classify`` feeds it (``feed``: at most ``max_in_flight`` documents outstanding). Raises
    :class:`DocumentNotScored` for a document the engine returns an error for."""
    from tqdm.auto import tqdm

    names = engine.manifest.label_names
    requests = [DocumentRequest(document) for document in documents]
    row_of = {request: row for row, request in enumerate(requests)}
    probabilities = np.empty((len(requests), len(names)), dtype=np.float32)
    with tqdm(total=len(requests), desc=description, unit="doc", leave=False,
              disable=None if progress is None else not progress) as bar:
        for result in feed(engine, requests, engine.settings.max_in_flight):
            if result.message is None:
                raise DocumentNotScored(
                    f"document {result.item.document.id!r} could not be scored: {result.error}")
            scores = result.message.scores
            probabilities[row_of[result.item]] = [scores[name] for name in names]
            bar.update(1)
    return probabilities
