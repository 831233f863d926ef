"""No test leakage: thresholds are never tuned on the test split, record the data they were tuned
on, and every metric that depends on them is measured again (or removed)."""

import gzip
import shutil

import pytest

from model_training import retune as retune_module
from model_training.documents import load_split
from model_training.errors import DataError
from model_training.evaluation import score
from model_training.export import half_precision_metrics, save_manifest
from model_training.labels import load_label_set
from model_training.retune import retune
from tests.tiny_checkpoint import make_tiny_checkpoint
from tests.unit.training.test_helpers import LABEL_NAMES, make_data_dir
from worker.inference.engine_settings import EngineSettings

STALE = {"micro_f1": 0.123, "macro_f1": 0.1}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A tiny checkpoint whose manifest records the data directory's dev and test splits."""
    monkeypatch.setenv("EUROVOC_CACHE", str(tmp_path / "cache"))
    data = make_data_dir(tmp_path / "data")
    labels = load_label_set(data / "labels.json")
    fingerprints = {split: load_split(data, split, labels).fingerprint for split in ("dev", "test")}
    checkpoint = tmp_path / "ckpt"
    manifest = make_tiny_checkpoint(checkpoint, label_names=LABEL_NAMES)
    metrics = {key: dict(STALE) for key in ("dev", "dev@0.5", "test", "test@0.5")}
    metrics["half_precision@test"] = {"micro_f1_full": 0.1, "micro_f1_half": 0.1}
    metrics["half_precision@test"]["micro_f1_change"] = 0.0
    save_manifest(
        checkpoint,
        manifest.model_copy(update={"data_fingerprints": fingerprints, "metrics": metrics}),
    )
    settings = EngineSettings(model=checkpoint, warmup=False, torch_threads=1)
    return data, checkpoint, settings, fingerprints


def _never_scored(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model must not run on refused data")

    monkeypatch.setattr(retune_module, "score_split", fail)


def test_refuses_the_test_split_by_name(setup, monkeypatch):
    data, _, engine, _ = setup
    _never_scored(monkeypatch)
    with pytest.raises(DataError, match="refusing to tune thresholds on the test split"):
        retune(engine, str(data), split="test")


def test_refuses_the_test_data_under_any_name_place_or_compression(setup, tmp_path, monkeypatch):
    data, _, engine, _ = setup
    _never_scored(monkeypatch)
    disguised = tmp_path / "elsewhere" / "dev.jsonl.gz"
    disguised.parent.mkdir()
    with (data / "test.jsonl").open("rb") as source, gzip.open(disguised, "wb") as target:
        shutil.copyfileobj(source, target)
    shutil.copy(data / "labels.json", disguised.parent / "labels.json")
    for where, split in ((disguised, "dev"), (disguised.parent, "dev")):
        with pytest.raises(DataError, match="it is the test split this checkpoint is measured on"):
            retune(engine, str(where), split=split)


def test_thresholds_record_their_data_and_tuned_metrics_are_measured_again(setup):
    data, checkpoint, engine, fingerprints = setup
    result = retune(engine, str(data), split="dev", min_positives=5)
    manifest = result.manifest
    assert manifest.thresholds.tuned_on == fingerprints["dev"]
    assert manifest.thresholds.inference == result.scored.inference
    assert manifest.thresholds.inference.max_length == manifest.max_length
    assert manifest.data_fingerprints == fingerprints
    assert result.refreshed == ["dev", "test"] and result.removed == ["half_precision@test"]
    assert set(manifest.metrics) == {"dev", "dev@0.5", "test", "test@0.5"}
    save_manifest(checkpoint, manifest)
    for split in ("dev", "test"):
        measured = score(engine, str(data), split=split).metrics()
        assert manifest.metrics[split] == pytest.approx(measured["tuned"], abs=1e-9, nan_ok=True)
        assert manifest.metrics[f"{split}@0.5"] == pytest.approx(measured["0.5"], nan_ok=True)


def test_records_whose_data_is_not_at_hand_are_removed(setup):
    data, _, engine, _ = setup
    result = retune(engine, str(data / "dev.jsonl.gz"), split="dev", min_positives=5)
    assert result.refreshed == ["dev"]
    assert result.removed == ["test", "half_precision@test"]
    assert set(result.manifest.metrics) == {"dev", "dev@0.5", "test@0.5"}
    assert result.manifest.metrics["test@0.5"] == STALE  # does not depend on thresholds: kept


def test_half_precision_metrics_keep_the_source_records():
    source = {"dev": {"micro_f1": 0.8}, "dev@0.5": {"micro_f1": 0.7}, "test": {"micro_f1": 0.6}}
    full = {"tuned": {"micro_f1": 0.6}, "0.5": {"micro_f1": 0.55}}
    half = {"tuned": {"micro_f1": 0.61}, "0.5": {"micro_f1": 0.56}}
    metrics = half_precision_metrics(source, "test", full, half)
    assert metrics["dev"] == source["dev"] and metrics["dev@0.5"] == source["dev@0.5"]
    assert metrics["test"] == half["tuned"] and metrics["test@0.5"] == half["0.5"]
    assert metrics["half_precision@test"]["micro_f1_change"] == pytest.approx(0.01)
