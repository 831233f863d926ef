"""Probabilities + manifest thresholds → LabelsMessage."""

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from schemas.labels import LabelsMessage, SourceRef
from schemas.manifest import CheckpointManifest, Thresholds
from worker.inference.output_builder import OutputBuilder

NAMES = ["agriculture", "trade", "finance", "law"]


def manifest(**threshold_fields) -> CheckpointManifest:
    return CheckpointManifest(
        name="tiny",
        version="7",
        labels=[{"id": i, "name": name} for i, name in enumerate(NAMES)],
        thresholds=Thresholds(**threshold_fields),
        max_length=64,
        base_model="tiny",
        weights_sha256="ab" * 32,
        package_version="0.1.0",
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def build(builder, probabilities, **kwargs) -> LabelsMessage:
    defaults = {"truncated": False, "chunks": 1, "tokens": 10}
    return builder.build("doc-1", np.asarray(probabilities, dtype=np.float32), **defaults | kwargs)


def test_labels_sorted_by_score_with_all_scores_and_thresholds():
    builder = OutputBuilder(manifest(per_label={"law": 0.9}))
    message = build(builder, [0.6, 0.1, 0.8, 0.85])
    assert [(label.id, label.name) for label in message.labels] == [
        (2, "finance"),
        (0, "agriculture"),
    ]
    assert message.labels[0].score == pytest.approx(0.8)
    assert list(message.scores) == NAMES
    assert message.scores["law"] == pytest.approx(0.85)
    assert message.thresholds == {"agriculture": 0.5, "trade": 0.5, "finance": 0.5, "law": 0.9}
    assert message.id == "doc-1"


def test_ties_keep_label_order():
    message = build(OutputBuilder(manifest()), [0.75, 0.75, 0.1, 0.75])
    assert [label.id for label in message.labels] == [0, 1, 3]


def test_published_scores_and_thresholds_agree_exactly():
    # 0.325 is not exact in float32: the decision must match scores[name] >= thresholds[name]
    builder = OutputBuilder(manifest(**{"global": 0.325}))
    message = build(builder, [0.325, 0.3249999, 0.33, 0.0])
    for name, score in message.scores.items():
        assert (name in {label.name for label in message.labels}) == (
            score >= message.thresholds[name]
        )


def test_at_least_one_from_the_manifest():
    probabilities = [0.1, 0.3, 0.2, 0.05]
    assert build(OutputBuilder(manifest()), probabilities).labels == []
    message = build(OutputBuilder(manifest(at_least_one=True)), probabilities)
    assert [label.name for label in message.labels] == ["trade"]


def test_model_info_flags_source_and_time():
    fixed = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    builder = OutputBuilder(manifest(), now=lambda: fixed)
    source = SourceRef(topic="docs", partition=2, offset=41)
    message = build(builder, [0.6] * 4, truncated=True, chunks=3, tokens=190, source=source)
    assert message.model.model_dump() == {"name": "tiny", "version": "7", "sha256": "ab" * 32}
    assert (message.truncated, message.chunks, message.tokens) == (True, 3, 190)
    assert message.source == source
    assert message.produced_at == fixed
    assert build(builder, [0.6] * 4).source is None


def test_default_time_is_utc_now():
    before = datetime.now(UTC)
    message = build(OutputBuilder(manifest()), [0.6] * 4)
    assert message.produced_at.utcoffset() == timedelta(0)
    assert before <= message.produced_at <= datetime.now(UTC)
    assert message.produced_at.tzinfo in (UTC, timezone.utc)


@pytest.mark.parametrize(
    "probabilities", [[0.1, 0.2, 0.3], [0.1, np.nan, 0.3, 0.4], [0.1, 1.5, 0.3, 0.4]]
)
def test_rejects_bad_probabilities(probabilities):
    with pytest.raises(ValueError):
        build(OutputBuilder(manifest()), probabilities)
