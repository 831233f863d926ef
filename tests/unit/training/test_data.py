"""Loading splits and labels files, and the clear errors bad inputs give."""

import gzip
import json
import sys
from pathlib import Path

import pytest

from model_training.documents import load_split, read_jsonl
from model_training.errors import DataError
from model_training.evaluation import label_set_for
from model_training.labels import (
    LabelSet,
    build_concept_labels,
    default_labels_path,
    labels_file_for_data,
    load_label_set,
)
from schemas.document import InputDocument
from tests.tiny_checkpoint import make_tiny_checkpoint
from tests.unit.training.test_helpers import LABEL_NAMES, make_data_dir, write_jsonl
from worker.inference.tokenization import document_text

SHARED_LABELS = (
    Path(__file__).resolve().parents[3]
    / ".."
    / "shared"
    / "data"
    / "eurlex57k"
    / "labels_level1.json"
)


@pytest.fixture
def labels4(tmp_path) -> LabelSet:
    return load_label_set(make_data_dir(tmp_path / "data", train=4, dev=4, test=4) / "labels.json")


def test_packaged_labels_are_the_21_level1_domains():
    label_set = load_label_set()
    assert len(label_set) == 21
    assert label_set.names[0] == "social questions"
    assert label_set.extra[0]["eurovoc_domain"] == 28
    if SHARED_LABELS.is_file():
        assert json.loads(default_labels_path().read_text()) == json.loads(
            SHARED_LABELS.read_text()
        )


def test_reads_the_shared_layout_and_plain_jsonl(tmp_path, labels4):
    data = make_data_dir(tmp_path / "d", train=5, dev=3, test=2)
    train = load_split(data, "train", labels4)
    assert len(train) == 5 and train.documents[0].id == "train0000"
    assert train.label_matrix(4).sum() == sum(len(d.labels) for d in train.documents)
    assert len(load_split(data, "dev", labels4)) == 3
    assert len(load_split(data, "test", labels4)) == 2  # plain .jsonl
    plain = write_jsonl(
        tmp_path / "plain.jsonl",
        [
            {"id": "a", "text": "milk", "labels": [0, "trade"]},
            {"text": "no id", "labels": []},
        ],
    )
    split = read_jsonl(plain, labels4)
    assert [d.id for d in split.documents] == ["a", "2"]
    assert split.documents[0].labels == (0, 2)
    assert split.fingerprint.startswith("sha256:")


def test_fingerprint_is_the_content_whatever_the_name_place_or_compression(tmp_path, labels4):
    data = make_data_dir(tmp_path / "d", train=5, dev=3, test=4)
    test = load_split(data, "test", labels4)
    lines = (data / "test.jsonl").read_text().splitlines()
    copy = tmp_path / "elsewhere" / "renamed.jsonl.gz"
    copy.parent.mkdir()
    with gzip.open(copy, "wt") as handle:
        handle.write("\n".join(lines) + "\n\n")  # compressed, a blank line more
    assert read_jsonl(copy, labels4).fingerprint == test.fingerprint
    assert load_split(data, "dev", labels4).fingerprint != test.fingerprint
    (tmp_path / "fewer.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert read_jsonl(tmp_path / "fewer.jsonl", labels4).fingerprint != test.fingerprint


def test_subsets_are_seeded_or_most_recent(tmp_path, labels4):
    split = load_split(make_data_dir(tmp_path / "d", train=40), "train", labels4)
    recent = split.subset(10, strategy="recent")
    assert sorted(d.year for d in recent.documents) == sorted(d.year for d in split.documents)[-10:]
    assert split.subset(10, seed=1).documents == split.subset(10, seed=1).documents
    assert split.subset(10, seed=1).fingerprint != split.subset(10, seed=2).fingerprint
    assert split.subset(100) is split


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "is empty"),
        ([{"id": "x", "text": "t", "labels": [4]}], "unknown label id 4"),
        ([{"id": "x", "text": "t", "labels": ["nope"]}], "unknown label 'nope'"),
        ([{"id": "x", "labels": [0]}], "missing string field 'text'"),
        ([{"id": "x", "text": "t"}], "missing field 'labels'"),
        ([{"id": "x", "text": "t", "labels": 3}], "must be a list"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, labels4, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message):
        read_jsonl(path, labels4)


def test_invalid_json_and_missing_inputs(tmp_path, labels4):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a", "text": "t", "labels": []}\n{not json\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid JSON"):
        read_jsonl(path, labels4)
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl", labels4)
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nowhere", "train", labels4)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no 'dev' split .* dev.jsonl.gz, dev.jsonl, validation"):
        load_split(tmp_path / "empty_dir", "dev", labels4)


def test_training_reads_title_and_text_exactly_as_the_worker_does(tmp_path, labels4):
    path = write_jsonl(
        tmp_path / "titled.jsonl",
        [{"celex_id": "c1", "title": "Council Regulation", "text": "on milk", "labels": [0]}],
    )
    (document,) = read_jsonl(path, labels4).documents
    worker_input = InputDocument(id="c1", title="Council Regulation", text="on milk")
    assert document.model_text == document_text(worker_input) != document.text


def test_prediction_input_needs_no_labels(tmp_path, labels4):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"celex_id": "c1", "text": "t", "labels": [99]}])
    assert read_jsonl(path, labels4, with_labels=False).documents[0].labels == ()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "non-empty JSON list"),
        ('[{"id": 1, "name": "a"}]', "entry 0 must be an object with id=0"),
        ('[{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]', "must be unique"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_labels_files(tmp_path, content, message):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_label_set(path)
    with pytest.raises(DataError, match="does not exist"):
        load_label_set(tmp_path / "absent.json")


def test_labels_file_must_match_the_checkpoint(tmp_path):
    data = make_data_dir(tmp_path / "data", train=2, dev=2, test=2)
    assert labels_file_for_data(data) == data / "labels.json"
    assert labels_file_for_data(tmp_path) == default_labels_path()
    matching = make_tiny_checkpoint(tmp_path / "ok", label_names=LABEL_NAMES)
    assert label_set_for(matching, str(data / "test.jsonl"), None).names == LABEL_NAMES
    other = make_tiny_checkpoint(tmp_path / "ckpt")  # 21 labels
    with pytest.raises(
        DataError, match="label file mismatch: .* defines 4 labels .* checkpoint has 21"
    ):
        label_set_for(other, str(data), None)
    # Without a labels file beside the data, the checkpoint's own labels are used.
    lone = write_jsonl(tmp_path / "lone.jsonl", [{"id": "a", "text": "t", "labels": [20]}])
    assert len(label_set_for(other, str(lone), None)) == 21


def test_level2_labels_from_concepts_need_no_code_change(tmp_path):
    concepts = {
        "10": {"label": "domestic trade", "domains": [20], "microthesauri": [100191]},
        "11": {"label": "trade policy", "domains": [20], "microthesauri": [100191, 100192]},
        "12": {"label": "milk", "domains": [56], "microthesauri": [100250]},
    }
    concepts_path = tmp_path / "eurovoc_concepts.json.gz"
    with gzip.open(concepts_path, "wt") as handle:
        json.dump(concepts, handle)
    entries = build_concept_labels(concepts_path, level=2)
    assert [entry["name"] for entry in entries] == [
        "microthesaurus 100191",
        "microthesaurus 100192",
        "microthesaurus 100250",
    ]
    labels_path = tmp_path / "labels_level2.json"
    labels_path.write_text(json.dumps(entries))
    label_set = load_label_set(labels_path)
    assert label_set.from_concepts and "concepts" not in label_set.extra[0]
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"celex_id": "a", "text": "t", "labels": [3], "eurovoc_concepts": ["11", "12"]},
            {"celex_id": "b", "text": "t", "labels": [3], "eurovoc_concepts": ["999"]},
        ],
    )
    split = read_jsonl(path, label_set)
    assert [d.labels for d in split.documents] == [(0, 1, 2), ()]
    level1 = build_concept_labels(concepts_path, level=1)
    assert [entry["eurovoc_domain"] for entry in level1] == [20, 56]
    with pytest.raises(DataError, match="level must be 1 or 2"):
        build_concept_labels(concepts_path, level=3)


def test_multi_eurlex_needs_the_datasets_package(monkeypatch, labels4):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(DataError, match="needs the 'datasets' package"):
        load_split("hf:multi_eurlex:en", "train", labels4)
