"""worker.inference.batch_scoring: the worker's engine scoring a list in-process (evaluation, tuning, bench)."""

import logging
import os
import shutil

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from schemas.document import InputDocument  # noqa: E402
from schemas.manifest import MANIFEST_FILENAME, read_manifest  # noqa: E402
from tests.tiny_checkpoint import PoisonedTokenizer  # noqa: E402
from tests.unit.inference.test_engine import WORDS, checkpoint_dir, settings  # noqa: E402, F401 - fixture
from worker.inference.batch_scoring import (  # noqa: E402
    DocumentNotScored,
    inference_record,
    running_engine,
    score_documents,
)
from worker.inference.engine_settings import EngineSettings  # noqa: E402
from worker.inference.runner_setup import build_runner, untuned_settings  # noqa: E402


def documents(n: int) -> list[InputDocument]:
    words = (WORDS[(i * j) % len(WORDS)] for i in range(n) for j in range(i * 5 + 3))
    texts = [" ".join(next(words) for _ in range(i * 5 + 3)) for i in range(n)]
    return [InputDocument(id=f"d{i}", text=text) for i, text in enumerate(texts)]


def engine_settings(checkpoint_dir, **overrides) -> EngineSettings:
    values = {"dtype": "float32", "torch_threads": 1, "max_in_flight": 3} | overrides
    return settings(checkpoint_dir, **values)


def test_probabilities_come_back_in_input_order_as_the_engine_scores_each(checkpoint_dir):
    docs = documents(10)  # more than max_in_flight: the feeding waits for room
    with running_engine(engine_settings(checkpoint_dir)) as engine:
        probabilities = score_documents(engine, docs, progress=False)
        alone = np.stack([
            engine.runner.score(engine.document_tokenizer([document])[0].windows)[0]
            for document in docs
        ])
    assert probabilities.shape == (10, len(engine.manifest.labels))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, alone, atol=1e-5)
    assert len({row.tobytes() for row in probabilities}) > 1  # not one row copied ten times


def test_a_document_the_engine_cannot_score_is_an_error(checkpoint_dir):
    with running_engine(engine_settings(checkpoint_dir)) as engine:
        tokenizer = engine.document_tokenizer
        tokenizer.tokenizer = PoisonedTokenizer(tokenizer.tokenizer)
        bad = InputDocument(id="bad-one", text="poison")
        with pytest.raises(DocumentNotScored, match="'bad-one' could not be scored"):
            score_documents(engine, [*documents(2), bad], progress=False)


def test_the_record_names_the_settings_in_effect(checkpoint_dir):
    with running_engine(engine_settings(checkpoint_dir)) as engine:
        record = inference_record(engine)
    assert record.model_dump() == {
        "device": "cpu", "dtype": "float32", "max_length": 64, "long_documents": "truncate",
        "max_chunks": None, "chunk_stride": None, "chunk_aggregation": None,
    }
    chunked = engine_settings(checkpoint_dir, dtype="bfloat16", long_documents="chunk",
                              max_length=16, chunk_stride=4, max_chunks=3)
    with running_engine(chunked) as engine:
        record = inference_record(engine)
        assert engine.runner.dtype == torch.bfloat16
    assert (record.dtype, record.max_length, record.long_documents) == ("bfloat16", 16, "chunk")
    assert (record.max_chunks, record.chunk_stride, record.chunk_aggregation) == (3, 4, "first-max")


def test_the_worker_warns_when_it_runs_otherwise_than_the_thresholds_were_tuned(
    checkpoint_dir, tmp_path, caplog
):
    copy = tmp_path / "tuned"
    shutil.copytree(checkpoint_dir, copy)
    with running_engine(engine_settings(copy)) as engine:
        record = inference_record(engine)
    manifest = read_manifest(copy)
    thresholds = manifest.thresholds.model_copy(update={"inference": record})
    (copy / MANIFEST_FILENAME).write_text(
        manifest.model_copy(update={"thresholds": thresholds}).model_dump_json(by_alias=True)
    )
    with caplog.at_level(logging.WARNING, logger="worker.inference.runner_setup"):
        runner = build_runner(engine_settings(copy))
    # Only this module's records: background clients of earlier Kafka tests may still log.
    warnings = [r for r in caplog.records if r.name == "worker.inference.runner_setup"]
    assert untuned_settings(engine_settings(copy), runner) == [] and not warnings
    chunked = engine_settings(copy, long_documents="chunk", max_length=16, chunk_stride=4)
    with caplog.at_level(logging.WARNING, logger="worker.inference.runner_setup"):
        runner = build_runner(chunked)
    assert untuned_settings(chunked, runner) == [
        "max_length: 64 -> 16", "long_documents: truncate -> chunk"
    ]
    assert "re-tune them with eurovoc-train tune-thresholds" in caplog.text
