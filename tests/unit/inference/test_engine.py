"""InferenceEngine: the threaded API the Kafka side uses, and EngineSettings validation."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from schemas.document import InputDocument  # noqa: E402
from schemas.labels import SourceRef  # noqa: E402
from tests.tiny_checkpoint import PoisonedTokenizer, make_tiny_checkpoint  # noqa: E402
from tests.unit.inference.test_model_runner import OutOfMemoryWhen  # noqa: E402
from worker.inference.checkpoint import load_checkpoint  # noqa: E402
from worker.inference.cpu_resources import cpu_computes_bf16, usable_cpus  # noqa: E402
from worker.inference.engine import InferenceEngine  # noqa: E402
from worker.inference.engine_metrics import EngineMetrics  # noqa: E402
from worker.inference.engine_settings import (  # noqa: E402
    EngineSettings,
    dtype_name,
    resolve_device,
    resolve_dtype,
)
from worker.inference.model_runner import ModelRunner, eager_forward  # noqa: E402
from worker.inference.requests import (  # noqa: E402
    DocumentRequest,
    EngineFailed,
    EngineResult,
    EngineStage,
)
from worker.pipeline.work_items import Stage, WorkItem  # noqa: E402

torch.set_num_threads(1)

WORDS = "council regulation fish milk wine steel trade customs tax bank court water".split()


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    make_tiny_checkpoint(path, max_length=64)
    return path


def settings(checkpoint_dir, **overrides) -> EngineSettings:
    values = {"model": checkpoint_dir, "warmup": False, "max_wait_ms": 5} | overrides
    return EngineSettings(**values)


def make_engine(checkpoint_dir, metrics=None, forward=None, **overrides) -> InferenceEngine:
    """An engine on the tiny checkpoint; ``forward(model_forward)`` returns the runner's forward
    pass (to simulate out-of-memory, failures, slowness)."""
    config = settings(checkpoint_dir, **overrides)
    checkpoint = load_checkpoint(checkpoint_dir)
    inner = eager_forward(checkpoint.model)
    runner = ModelRunner(checkpoint, max_length=config.resolve_max_length(64),
                         forward=None if forward is None else forward(inner))
    return InferenceEngine(runner, config, metrics)


@pytest.fixture
def engine(checkpoint_dir):
    engine = make_engine(checkpoint_dir)
    yield engine
    engine.stop()


def item(doc_id: str, n_words: int = 5, partition: int = 0, offset: int = 0) -> DocumentRequest:
    text = " ".join(WORDS[(i * 7 + len(doc_id)) % len(WORDS)] for i in range(n_words))
    return DocumentRequest(
        InputDocument(id=doc_id, text=text),
        source=SourceRef(topic="in", partition=partition, offset=offset),
    )


def collect(engine, n, timeout=10.0) -> dict[str, EngineResult]:
    results: dict[str, EngineResult] = {}
    deadline = time.monotonic() + timeout
    while len(results) < n:
        assert time.monotonic() < deadline, f"only {len(results)} of {n} results arrived"
        for result in engine.poll_results(timeout=0.2):
            assert result.item.document.id not in results, "a result came back twice"
            results[result.item.document.id] = result
    return results


def direct_scores(engine, work: DocumentRequest) -> np.ndarray:
    [tokenized] = engine.document_tokenizer([work.document])
    return engine.runner.score(tokenized.windows)[0]


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults_and_validation(tmp_path):
    config = EngineSettings(model=tmp_path)
    assert (config.device, config.dtype, config.max_batch_tokens, config.max_batch_size) == (
        "auto", "auto", None, 64
    )
    # the batch budget depends on the device: small on CPU (latency), large on CUDA
    assert config.resolve_batch_tokens("cpu", 128) == 4096
    assert config.resolve_batch_tokens("cuda", 512) == 16384
    assert config.resolve_batch_tokens("cpu", 8000) == 8000  # always one whole sequence
    assert EngineSettings(model=tmp_path, max_batch_tokens=999).resolve_batch_tokens("cuda", 8) == 999
    assert (config.max_wait_ms, config.max_length, config.long_documents) == (20, None, "truncate")
    assert (config.chunk_stride, config.max_chunks, config.chunk_aggregation) == (
        64, 4, "first-max"
    )
    assert (config.max_chars_per_token, config.max_in_flight) == (12, 256)
    assert config.torch_threads is None and config.warmup is True
    assert config.torch_compile == "off"
    assert all(field.description for field in EngineSettings.model_fields.values())
    with pytest.raises(ValidationError):
        config.max_batch_size = 3  # frozen
    with pytest.raises(ValidationError, match="max_batch_tokens"):
        EngineSettings(model=tmp_path, max_length=512, max_batch_tokens=500)
    EngineSettings(model=tmp_path, max_length=510, max_batch_tokens=512)  # 510 pads to 512
    with pytest.raises(ValidationError, match="max_batch_tokens"):
        EngineSettings(model=tmp_path, max_length=513, max_batch_tokens=513)  # pads to 520
    with pytest.raises(ValidationError, match="chunk_stride"):
        EngineSettings(model=tmp_path, max_length=64, long_documents="chunk", chunk_stride=64)
    with pytest.raises(ValidationError):
        EngineSettings(model=tmp_path, dtype="int8")
    with pytest.raises(ValidationError):
        EngineSettings(model=tmp_path, max_batch_size=0)
    with pytest.raises(ValidationError):
        EngineSettings(model=tmp_path, unknown_field=1)
    # max_length=None is checked against the checkpoint's once known
    with pytest.raises(ValueError, match="max_batch_tokens"):
        EngineSettings(model=tmp_path, max_batch_tokens=256).resolve_max_length(512)


def test_device_and_dtype_resolution():
    cpu = torch.device("cpu")
    native_bf16 = cpu_computes_bf16()
    assert resolve_dtype("auto", cpu) == (torch.bfloat16 if native_bf16 else torch.float32)
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_device("cpu") == cpu
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


def test_chunk_stride_is_checked_against_the_tokenizers_special_tokens(checkpoint_dir):
    # the settings reject only a stride that can never work (no room left at all)...
    with pytest.raises(ValidationError, match="chunk_stride"):
        settings(checkpoint_dir, max_length=64, long_documents="chunk", chunk_stride=64)
    # ...the tokenizer counts its special tokens: BERT's [CLS] and [SEP] leave 62 per window
    with pytest.raises(ValueError, match="chunk_stride=62 .* 2 special tokens"):
        make_engine(checkpoint_dir, max_length=64, long_documents="chunk", chunk_stride=62)
    make_engine(checkpoint_dir, max_length=64, long_documents="chunk", chunk_stride=61)


def test_engine_refuses_a_runner_built_for_another_length(checkpoint_dir):
    runner = ModelRunner(load_checkpoint(checkpoint_dir))  # 64 tokens
    with pytest.raises(ValueError, match="max_length"):
        InferenceEngine(runner, settings(checkpoint_dir, max_length=32))


# -- the engine ---------------------------------------------------------------------------


def test_labels_every_document_with_the_models_scores(checkpoint_dir):
    metrics = EngineMetrics()
    engine = make_engine(checkpoint_dir, metrics)
    items = [item(f"doc{i}", n_words=1 + (i * 13) % 90, offset=i) for i in range(40)]
    assert not engine.healthy()
    engine.start()
    try:
        assert engine.healthy()
        engine.submit(items[:25])
        engine.submit(items[25:])
        results = collect(engine, 40)
    finally:
        engine.stop()
    assert engine.pending() == 0
    for work in items:
        result = results[work.document.id]
        assert result.error is None and result.item is work
        message = result.message
        assert message.source == work.source
        assert message.chunks == 1
        expected_tokens = min(64, len(work.document.text.split()) + 2)
        assert message.tokens == expected_tokens
        assert message.truncated == (len(work.document.text.split()) + 2 > 64)
        got = np.array([message.scores[name] for name in engine.manifest.label_names])
        np.testing.assert_allclose(got, direct_scores(engine, work), atol=1e-5)
    text = generate_latest(metrics.registry).decode()
    assert 'eurovoc_model_info{' in text and 'name="tiny-random-bert"' in text
    info = {"name": "tiny-random-bert", "version": engine.manifest.version,
            "sha256": engine.manifest.weights_sha256, "max_length": "64",
            "long_documents": "truncate", "device": "cpu",
            "dtype": dtype_name(engine.runner.dtype)}
    assert metrics.registry.get_sample_value("eurovoc_model_info", info) == 1
    observed = {name: metrics.registry.get_sample_value(f"eurovoc_{name}_count") for name in (
        "batch_size", "batch_tokens", "padding_efficiency", "tokenize_seconds", "queue_seconds",
        "inference_seconds")}
    assert observed["queue_seconds"] == 40
    assert all(value >= 1 for value in observed.values()), observed


def test_a_lone_document_is_not_held_back(engine):
    engine.start()
    engine.submit([item("alone")])
    started = time.monotonic()
    results = collect(engine, 1, timeout=5)
    assert results["alone"].message is not None
    assert time.monotonic() - started < 2.0
    assert engine.poll_results() == []


def test_poll_results_waits_for_at_least_one_then_returns(engine):
    engine.start()
    started = time.monotonic()
    assert engine.poll_results(timeout=0.2) == []
    assert time.monotonic() - started >= 0.19
    engine.submit([item("a")])
    assert len(engine.poll_results(timeout=5)) == 1


def test_on_results_is_called_when_results_are_ready(engine):
    called = threading.Event()
    engine.on_results = called.set
    engine.start()
    engine.submit([item("a")])
    assert called.wait(5)
    assert len(engine.poll_results()) == 1


def test_pending_counts_until_polled(engine):
    engine.submit([item("a"), item("b")])  # queued before start
    assert engine.pending() == 2
    engine.start()
    time.sleep(0.3)
    assert engine.pending() == 2, "finished but not polled is still pending"
    assert len(collect(engine, 2)) == 2
    assert engine.pending() == 0


def test_a_document_that_cannot_be_tokenized_is_an_error_result(engine):
    tokenizer = engine.document_tokenizer
    tokenizer.tokenizer = PoisonedTokenizer(tokenizer.tokenizer)
    bad = DocumentRequest(InputDocument(id="bad", text="poison"))
    engine.start()
    engine.submit([item("good1"), bad, item("good2")])
    results = collect(engine, 3)
    assert results["bad"].message is None and "cannot tokenize" in results["bad"].error
    assert results["good1"].error is None and results["good2"].error is None
    assert engine.healthy()


def test_out_of_memory_on_one_document_is_an_error_result(checkpoint_dir):
    engine = make_engine(checkpoint_dir, forward=lambda inner: OutOfMemoryWhen(
        inner, lambda inputs: inputs["input_ids"].shape[1] > 32))
    engine.start()
    try:
        engine.submit([item("short1", 3), item("huge", 60), item("short2", 4)])
        results = collect(engine, 3)
        assert "out of memory" in results["huge"].error
        assert results["short1"].message is not None and results["short2"].message is not None
        assert engine.healthy()
    finally:
        engine.stop()


def test_out_of_memory_splits_are_counted(checkpoint_dir):
    metrics = EngineMetrics()
    engine = make_engine(checkpoint_dir, metrics, forward=lambda inner: OutOfMemoryWhen(
        inner, lambda inputs: inputs["input_ids"].shape[0] > 1))  # one sequence at a time fits
    engine.start()
    try:
        engine.submit([item(f"doc{i}", 6) for i in range(4)])  # one group: one batch of 4
        results = collect(engine, 4)
        assert all(result.error is None for result in results.values())
        assert metrics.registry.get_sample_value("eurovoc_oom_splits_total") >= 1
    finally:
        engine.stop()


def test_a_fatal_error_surfaces(checkpoint_dir):
    def broken(inputs):
        raise RuntimeError("device lost")

    engine = make_engine(checkpoint_dir, forward=lambda inner: broken)
    engine.start()
    try:
        engine.submit([item("a")])
        with pytest.raises(EngineFailed, match="device lost") as raised:
            collect(engine, 1, timeout=5)
        assert isinstance(raised.value.__cause__, RuntimeError)
        assert not engine.healthy()
        with pytest.raises(EngineFailed):
            engine.submit([item("b")])
    finally:
        engine.stop()


def cancel(items) -> None:
    for work in items:
        work.cancelled = True  # what the in-flight registry does for a revoked partition


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_cancelled_documents_are_dropped_queued_or_finished(engine):
    kept = [item(f"p0-{i}", partition=0) for i in range(5)]
    gone = [item(f"p1-{i}", partition=1) for i in range(5)]
    engine.submit(kept)
    engine.submit(gone)
    cancel(gone)
    engine.start()
    # finished but not yet polled: cancelling them means they are never returned either
    late = item("p2-late", partition=2)
    engine.submit([late])
    wait_for(lambda: late.stage is EngineStage.MODEL)
    time.sleep(0.2)  # scored and waiting to be polled
    cancel([late])
    results = collect(engine, 5)
    assert sorted(results) == [f"p0-{i}" for i in range(5)]
    assert engine.poll_results(timeout=0.3) == []
    assert engine.pending() == 0


def test_cancelled_while_being_scored(checkpoint_dir):
    in_forward = threading.Event()
    release = threading.Event()

    def slow(inner):
        def forward(inputs):
            in_forward.set()
            release.wait(5)
            return inner(inputs)

        return forward

    engine = make_engine(checkpoint_dir, forward=slow, max_batch_size=2)
    engine.start()
    try:
        scored = [item("first", partition=3), item("second", partition=3)]
        engine.submit(scored)
        assert in_forward.wait(5)
        assert {work.stage for work in scored} == {EngineStage.MODEL}
        engine.submit([item("other", partition=4)])
        cancel(scored)
        release.set()
        results = collect(engine, 1)
        assert list(results) == ["other"]
        assert engine.poll_results(timeout=0.3) == []
        wait_for(lambda: engine.pending() == 0)
    finally:
        release.set()
        engine.stop()


def test_chunk_mode_reports_chunks_tokens_and_truncation(checkpoint_dir):
    engine = make_engine(
        checkpoint_dir, max_length=16, long_documents="chunk", chunk_stride=4, max_chunks=3
    )
    engine.start()
    try:
        # 14 content tokens per window, 10 new after the first
        engine.submit([item("one", 10), item("three", 34), item("capped", 60)])
        results = collect(engine, 3)
    finally:
        engine.stop()
    one, three, capped = (results[key].message for key in ("one", "three", "capped"))
    assert (one.chunks, one.tokens, one.truncated) == (1, 12, False)
    assert (three.chunks, three.tokens, three.truncated) == (3, 16 + 16 + 16, False)
    assert (capped.chunks, capped.truncated) == (3, True)


def test_stop_ends_the_threads(engine):
    engine.start()
    assert engine.healthy()
    engine.stop(timeout=5)
    assert not engine.healthy()
    assert sorted(engine.threads) == ["inference", "tokenize"]
    assert all(not thread.is_alive() for thread in engine.threads.values())
    with pytest.raises(RuntimeError):
        engine.submit([item("late")])
    with pytest.raises(RuntimeError):
        engine.start()


def test_submit_from_one_thread_while_polling_from_another(engine):
    engine.start()
    total = 200
    results: dict[str, EngineResult] = {}

    def poller():
        deadline = time.monotonic() + 20
        while len(results) < total and time.monotonic() < deadline:
            for result in engine.poll_results(timeout=0.1):
                results[result.item.document.id] = result

    thread = threading.Thread(target=poller)
    thread.start()
    for start in range(0, total, 7):
        engine.submit([item(f"d{i}", 1 + i % 70) for i in range(start, min(total, start + 7))])
        time.sleep(0.001)
    thread.join(30)
    assert len(results) == total
    assert all(result.message is not None for result in results.values())


def test_from_settings_loads_and_warms_up(checkpoint_dir):
    metrics = EngineMetrics()
    engine = InferenceEngine.from_settings(
        EngineSettings(model=checkpoint_dir, device="cpu", warmup=True, max_length=32), metrics
    )
    assert engine.max_length == 32
    assert engine.runner.dtype == resolve_dtype("auto", torch.device("cpu"))
    assert torch.get_num_threads() == usable_cpus()  # torch_threads=None: the usable cores
    torch.set_num_threads(1)
    assert engine.manifest.name == "tiny-random-bert"
    with engine:
        engine.submit([item("x", 100)])
        [result] = collect(engine, 1).values()
    assert result.message.tokens == 32 and result.message.truncated


def test_cancelled_while_the_output_is_being_built(engine):
    building = threading.Event()
    release = threading.Event()
    build = engine.output_builder.build

    def slow_build(*args, **kwargs):
        building.set()
        release.wait(5)
        return build(*args, **kwargs)

    engine.output_builder.build = slow_build
    engine.start()
    try:
        gone = item("gone", partition=5)
        engine.submit([gone])
        assert building.wait(5)
        cancel([gone])
        release.set()
        assert engine.poll_results(timeout=0.5) == []
        assert engine.pending() == 0
    finally:
        release.set()


def test_a_pipeline_work_item_is_a_request_and_gets_the_pipeline_stages(engine):
    """The watchdog names the stage of the oldest ``WorkItem``: the engine's stages are the
    pipeline's ``Stage`` members of the same names."""
    assert [Stage(stage) for stage in EngineStage] == [Stage.BATCH_QUEUE, Stage.MODEL]
    assert (Stage.BATCH_QUEUE.value, Stage.MODEL.value) == ("batch queue", "model")
    work = WorkItem(source=None, received_at=time.monotonic(),
                    document=InputDocument(id="w", text="fish milk"), stage=Stage.TOKENIZE)
    engine.start()
    engine.submit([work])
    [result] = collect(engine, 1).values()
    assert result.item is work and result.message is not None
    assert work.stage is Stage.MODEL
