"""Checkpoint loading is safe: safetensors weights only, no code from the checkpoint ever runs."""

import json
import pickle
from pathlib import Path

import pytest

from tests.tiny_checkpoint import make_tiny_checkpoint
from worker.inference.checkpoint import CheckpointError, load_checkpoint


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
