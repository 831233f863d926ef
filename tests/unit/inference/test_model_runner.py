"""ModelRunner: padding, sigmoid scores, checkpoint checks, out-of-memory splitting, warm-up."""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402
from worker.inference.batching import pad_multiple  # noqa: E402
from worker.inference.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from worker.inference.model_runner import (  # noqa: E402
    ModelRunner,
    SequenceFailedError,
    eager_forward,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    make_tiny_checkpoint(path, max_length=64)
    return path


@pytest.fixture
def checkpoint(checkpoint_dir):
    return load_checkpoint(checkpoint_dir)


@pytest.fixture
def runner(checkpoint):
    return ModelRunner(checkpoint)


def encode(runner, text):
    return runner.tokenizer(text, truncation=True, max_length=runner.max_length)["input_ids"]


def reference(runner, ids) -> np.ndarray:
    """One unpadded sequence straight through the model."""
    with torch.no_grad():
        logits = runner.model(input_ids=torch.tensor([ids])).logits
    return torch.sigmoid(logits.float())[0].numpy()


def test_scores_are_sigmoid_probabilities_of_each_sequence(runner):
    texts = ["council regulation on fish", "milk", "the european union shall trade wine " * 5]
    batch = [encode(runner, text) for text in texts]
    scores = runner.score(batch)
    assert scores.dtype == np.float32
    assert scores.shape == (3, 21)
    assert ((scores > 0) & (scores < 1)).all()
    for ids, row in zip(batch, scores, strict=True):
        # padding inside the batch does not change a sequence's scores
        np.testing.assert_allclose(row, reference(runner, ids), atol=1e-5)


def test_pads_to_the_longest_on_cpu_and_to_a_multiple_of_eight_on_cuda(runner):
    assert runner.pad_multiple == 1  # a CPU computes every pad token for nothing
    padded = runner.pad([[2, 5, 3], [2] + [5] * 9 + [3]])
    assert padded["input_ids"].shape == (2, 11)
    assert padded["attention_mask"].sum(dim=1).tolist() == [3, 11]
    assert padded["input_ids"][0, 3:].eq(runner.tokenizer.pad_token_id).all()
    runner.pad_multiple = pad_multiple("cuda")  # 8: tensor-core friendly shapes
    assert runner.pad([[2, 5, 3], [2] + [5] * 9 + [3]])["input_ids"].shape == (2, 16)


def test_refuses_a_checkpoint_that_is_not_multi_label(checkpoint):
    checkpoint.model.config.problem_type = "single_label_classification"
    with pytest.raises(CheckpointError, match="problem_type"):
        ModelRunner(checkpoint)


def test_refuses_labels_that_disagree_with_the_manifest(checkpoint):
    checkpoint.model.config.id2label = {i: f"other_{i}" for i in range(21)}
    with pytest.raises(CheckpointError, match="id2label"):
        ModelRunner(checkpoint)


def test_refuses_a_max_length_beyond_the_position_embeddings(checkpoint):
    with pytest.raises(CheckpointError, match="positions"):
        ModelRunner(checkpoint, max_length=65)  # pads to 72 > 64 positions


class OutOfMemoryWhen:
    """A forward that raises CUDA-style OOM when ``condition(inputs)`` holds."""

    def __init__(self, inner, condition):
        self.inner = inner
        self.condition = condition
        self.batch_sizes = []

    def __call__(self, inputs):
        self.batch_sizes.append(inputs["input_ids"].shape[0])
        if self.condition(inputs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(inputs)


def test_out_of_memory_splits_the_batch_in_halves(runner, checkpoint):
    batch = [encode(runner, "fish milk wine " * n) for n in range(1, 9)]
    expected = runner.score(batch)
    fake = OutOfMemoryWhen(eager_forward(checkpoint.model),
                           lambda inputs: inputs["input_ids"].shape[0] > 2)
    scored = ModelRunner(checkpoint, forward=fake).score_batch(batch)
    assert scored.errors == {}
    np.testing.assert_allclose(scored.probabilities, expected, atol=1e-5)
    assert fake.batch_sizes == [8, 4, 2, 2, 4, 2, 2]
    assert scored.oom_splits == 3  # 8 -> 4 + 4, each 4 -> 2 + 2


def test_a_single_sequence_out_of_memory_is_a_per_sequence_error(checkpoint):
    fake = OutOfMemoryWhen(eager_forward(checkpoint.model),
                           lambda inputs: inputs["input_ids"].shape[1] > 16)
    runner = ModelRunner(checkpoint, forward=fake)
    batch = [encode(runner, "fish"), encode(runner, "milk " * 40), encode(runner, "wine")]
    scored = runner.score_batch(batch)
    assert list(scored.errors) == [1]
    assert "out of memory" in scored.errors[1]
    assert np.isnan(scored.probabilities[1]).all()
    assert np.isfinite(scored.probabilities[[0, 2]]).all()
    with pytest.raises(SequenceFailedError, match="sequence 1"):
        runner.score(batch)


def test_other_errors_are_not_hidden(checkpoint):
    def broken(inputs):
        raise RuntimeError("shape mismatch")

    runner = ModelRunner(checkpoint, forward=broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        runner.score_batch([[2, 5, 3]])


def test_warmup_runs_bounded_padded_shapes(checkpoint):
    calls = []
    inner = eager_forward(checkpoint.model)
    runner = ModelRunner(checkpoint, forward=lambda inputs: calls.append(
        tuple(inputs["input_ids"].shape)) or inner(inputs))
    shapes = runner.warmup_shapes(max_batch_tokens=512, max_batch_size=64)
    assert shapes
    assert all(length % 8 == 0 and length <= 64 for _, length in shapes)
    assert all(size * length <= 512 for size, length in shapes)
    assert {length for _, length in shapes} >= {8, 64}
    assert runner.warmup(512, 64) == len(shapes)
    assert calls == shapes
    assert runner.warmup(512, 64, time_budget_s=0.0) <= 1


def test_compiled_forward_gives_the_eager_scores(runner, checkpoint_dir, monkeypatch):
    """torch.compile wiring, with the 'eager' backend (Inductor would compile C++ for minutes)."""
    from worker.inference import compilation

    batch = [encode(runner, text) for text in ("council regulation on fish", "milk wine " * 9)]
    eager = runner.score(batch)
    calls = []

    def fake_compiled_forward(model, mode, device_type):
        calls.append((mode, compilation.effective_mode(mode, device_type)))
        return compilation.compiled_forward(model, mode, device_type, backend="eager")

    monkeypatch.setattr("worker.inference.model_runner.compiled_forward", fake_compiled_forward)
    runner.compile("off")
    assert not runner.compiled and calls == []
    runner.compile("reduce-overhead")  # CUDA graphs: on a CPU this falls back to 'default'
    assert runner.compiled and calls == [("reduce-overhead", "default")]
    np.testing.assert_allclose(runner.score(batch), eager, atol=1e-6)
    # a compiled model compiles every warm-up shape at start-up, whatever the CPU time budget
    assert runner.warmup(512, 64) == len(runner.warmup_shapes(512, 64))
    with pytest.raises(ValueError, match="off"):
        compilation.compiled_forward(runner.model, "off", "cpu")
