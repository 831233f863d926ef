"""Checkpoint loading is safe: safetensors weights only, exactly those of the hashed file; no
code from the checkpoint ever runs."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from schemas.manifest import MANIFEST_FILENAME, read_manifest
from tests.tiny_checkpoint import make_tiny_checkpoint
from worker.inference import checkpoint as checkpoint_module
from worker.inference.checkpoint import CheckpointError, load_checkpoint, sha256_file


class _WritesMarker:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "model"
    make_tiny_checkpoint(path, max_length=32)
    return path


def _plant_code_and_pickle(path: Path) -> Path:
    """Remote code named by the configs and a pickled checkpoint, each creating the marker."""
    marker = path / "EXECUTED"
    (path / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class EvilConfig(BertConfig): pass\n"
        "class EvilModel(BertForSequenceClassification): pass\n"
    )
    for name, auto_map in (
        ("config.json", {"AutoConfig": "evil.EvilConfig",
                         "AutoModelForSequenceClassification": "evil.EvilModel"}),
        ("tokenizer_config.json", {"AutoTokenizer": ["evil.EvilConfig", None]}),
    ):
        config = json.loads((path / name).read_text())
        config["auto_map"] = auto_map
        (path / name).write_text(json.dumps(config))
    with open(path / "pytorch_model.bin", "wb") as handle:
        pickle.dump(_WritesMarker(marker), handle)
    return marker


def test_neither_checkpoint_code_nor_pickles_run(checkpoint):
    marker = _plant_code_and_pickle(checkpoint)
    loaded = load_checkpoint(checkpoint)
    assert type(loaded.model).__name__ == "BertForSequenceClassification"
    assert not marker.exists()


def test_a_checkpoint_without_safetensors_is_refused(checkpoint):
    marker = _plant_code_and_pickle(checkpoint)
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def _rewrite_manifest(path: Path, **changes) -> None:
    manifest = read_manifest(path).model_copy(update=changes)
    (path / MANIFEST_FILENAME).write_text(manifest.model_dump_json())


def test_the_weights_loaded_are_those_of_the_file_that_was_hashed(checkpoint, tmp_path):
    """The manifest names weights.safetensors; a model.safetensors of another model lies beside
    it (which from_pretrained(directory) would read): the hashed file is what runs."""
    hashed = checkpoint / "weights.safetensors"
    shutil.copyfile(checkpoint / "model.safetensors", hashed)
    other = tmp_path / "other"
    make_tiny_checkpoint(other, max_length=32, seed=1)
    shutil.copyfile(other / "model.safetensors", checkpoint / "model.safetensors")
    _rewrite_manifest(checkpoint, weights_file="weights.safetensors")
    loaded = load_checkpoint(checkpoint).model.state_dict()
    expected = load_file(hashed)
    assert set(expected) <= set(loaded)
    assert all(torch.equal(loaded[name], tensor) for name, tensor in expected.items())
    planted = load_file(checkpoint / "model.safetensors")
    assert not torch.equal(loaded["classifier.weight"], planted["classifier.weight"])


def test_weights_that_do_not_match_the_manifest_hash_are_refused(checkpoint):
    other = checkpoint.parent / "other"
    make_tiny_checkpoint(other, max_length=32, seed=1)
    shutil.copyfile(other / "model.safetensors", checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError, match="sha256 .* does not match the manifest's"):
        load_checkpoint(checkpoint)


def test_a_weights_file_without_every_parameter_is_refused_not_filled_with_random_ones(
        checkpoint):
    tensors = load_file(checkpoint / "model.safetensors")
    del tensors["classifier.weight"]
    save_file(tensors, checkpoint / "model.safetensors", metadata={"format": "pt"})
    _rewrite_manifest(checkpoint, weights_sha256=sha256_file(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match="does not hold the weights of the model its "
                                              "config describes \\(missing keys: "
                                              "classifier.weight\\)"):
        load_checkpoint(checkpoint)


def test_a_weights_file_that_is_not_safetensors_inside_is_refused(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"\x00" * 64)
    _rewrite_manifest(checkpoint, weights_sha256=sha256_file(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(checkpoint)


def test_a_weights_file_replaced_after_the_check_is_not_what_runs(checkpoint, monkeypatch):
    """Another file renamed over the checked one between the hash and the load: the open,
    hashed file is what is loaded (through /proc/self/fd)."""
    other = checkpoint.parent / "other"
    make_tiny_checkpoint(other, max_length=32, seed=1)
    expected = load_file(checkpoint / "model.safetensors")
    real_digest = checkpoint_module.hashlib.file_digest

    def digest_then_replace(handle, algorithm):
        digest = real_digest(handle, algorithm)
        os.replace(other / "model.safetensors", checkpoint / "model.safetensors")
        return digest

    monkeypatch.setattr(checkpoint_module.hashlib, "file_digest", digest_then_replace)
    loaded = load_checkpoint(checkpoint).model.state_dict()
    assert torch.equal(loaded["classifier.weight"], expected["classifier.weight"])
    replaced = load_file(checkpoint / "model.safetensors")
    assert not torch.equal(loaded["classifier.weight"], replaced["classifier.weight"])
