"""Chunk aggregation: a document's windows combine by first-max, max or mean."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from schemas.document import InputDocument  # noqa: E402
from tests.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402
from worker.inference.aggregation import WindowCollector, aggregate  # noqa: E402
from worker.inference.checkpoint import load_checkpoint  # noqa: E402
from worker.inference.engine import InferenceEngine  # noqa: E402
from worker.inference.engine_settings import EngineSettings  # noqa: E402
from worker.inference.model_runner import ModelRunner  # noqa: E402
from worker.inference.requests import DocumentRequest  # noqa: E402

torch.set_num_threads(1)


def test_max_and_mean():
    windows = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.5], [0.2, 0.4, 0.2]], dtype=np.float32)
    np.testing.assert_allclose(aggregate(windows, "max"), [0.3, 0.9, 0.5])
    np.testing.assert_allclose(aggregate(windows, "mean"), [0.2, 0.5, 0.4], rtol=1e-6)
    # first-max: the mean of the first window and the max over windows
    np.testing.assert_allclose(aggregate(windows, "first-max"), [0.2, 0.9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(aggregate(windows[::-1], "first-max"), [0.25, 0.65, 0.35],
                               rtol=1e-6)
    assert aggregate(windows, "first-max").dtype == np.float32
    np.testing.assert_array_equal(aggregate(windows[:1], "first-max"), windows[0])
    assert aggregate(windows, "mean").dtype == np.float32
    np.testing.assert_array_equal(aggregate(windows[:1], "mean"), windows[0])
    with pytest.raises(ValueError):
        aggregate(windows, "median")
    with pytest.raises(ValueError):
        aggregate(np.zeros((0, 3)), "max")


def test_collector_accepts_windows_in_any_order_once():
    collector = WindowCollector(3, 2)
    assert not collector.add(2, np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="not scored"):
        collector.result("max")
    assert not collector.add(0, np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="already"):
        collector.add(0, np.array([0.5, 0.0]))
    assert collector.add(1, np.array([0.3, 0.4]))
    assert collector.complete
    np.testing.assert_allclose(collector.result("max"), [0.5, 0.4])
    np.testing.assert_allclose(collector.result("mean"), [0.3, 0.2])


@pytest.mark.parametrize("how", ["max", "mean", "first-max"])
def test_a_three_window_document_gets_the_aggregate_of_its_windows_scored_alone(tmp_path, how):
    make_tiny_checkpoint(tmp_path, max_length=24)
    checkpoint = load_checkpoint(tmp_path)
    with torch.no_grad():  # a random tiny model scores everything ~0.5: spread the scores out
        checkpoint.model.classifier.weight.mul_(300.0)
    settings = EngineSettings(
        model=tmp_path, long_documents="chunk", chunk_stride=4, max_chunks=8,
        chunk_aggregation=how, max_wait_ms=1, warmup=False, max_batch_tokens=1024,
    )
    runner = ModelRunner(checkpoint)
    engine = InferenceEngine(runner, settings)
    # 22 content tokens per window, 18 new after the first: 22 + 18 + 10 = 50 words
    parts = ["fish milk wine " * 8, "steel trade customs " * 6, "tax bank court water " * 3]
    text = " ".join(" ".join(part.split()[:n]) for part, n in zip(parts, (22, 18, 10)))
    windows = engine.document_tokenizer([InputDocument(id="long", text=text)])[0].windows
    assert len(windows) == 3
    alone = np.stack([runner.score([window])[0] for window in windows])
    expected = {"max": alone.max(axis=0), "mean": alone.mean(axis=0),
                "first-max": (alone[0] + alone.max(axis=0)) / 2}[how]
    spread = np.abs(alone - expected).max(axis=0)
    assert spread.max() > 1e-3, "windows must score differently for the test to mean much"

    engine.start()
    try:
        # a short document in the same batches, to make sure padding does not leak in
        engine.submit([
            DocumentRequest(InputDocument(id="long", text=text)),
            DocumentRequest(InputDocument(id="short", text="fish")),
        ])
        results = {}
        while len(results) < 2:
            for result in engine.poll_results(timeout=5):
                results[result.item.document.id] = result
    finally:
        engine.stop()
    message = results["long"].message
    assert message.chunks == 3
    assert message.tokens == sum(len(window) for window in windows)
    assert not message.truncated
    got = np.array([message.scores[name] for name in checkpoint.manifest.label_names])
    np.testing.assert_allclose(got, expected, atol=1e-5)
