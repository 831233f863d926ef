"""The metrics module against scikit-learn, and threshold tuning on data built for it."""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    label_ranking_average_precision_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from model_training.metrics import (
    compute_metrics,
    dev_metrics,
    per_label_metrics,
    r_precision,
)
from model_training.thresholds import global_curve, tune_thresholds
from worker.inference.decision import apply_thresholds


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y_true = (rng.random((200, 7)) < 0.3).astype(int)
    y_true[0] = 0  # a document without labels
    probabilities = np.clip(0.55 * y_true + 0.6 * rng.random((200, 7)), 0, 1)
    return y_true, probabilities


def test_set_metrics_agree_with_sklearn(arrays):
    y_true, probabilities = arrays
    thresholds = np.array([0.5, 0.4, 0.6, 0.5, 0.3, 0.7, 0.5])
    predicted = apply_thresholds(probabilities, thresholds).astype(int)
    metrics = compute_metrics(y_true, probabilities, thresholds)
    for average in ("micro", "macro", "weighted"):
        assert metrics[f"{average}_f1"] == pytest.approx(
            f1_score(y_true, predicted, average=average, zero_division=0), abs=1e-12
        )
        assert metrics[f"{average}_precision"] == pytest.approx(
            precision_score(y_true, predicted, average=average, zero_division=0), abs=1e-12
        )
        assert metrics[f"{average}_recall"] == pytest.approx(
            recall_score(y_true, predicted, average=average, zero_division=0), abs=1e-12
        )
    assert metrics["subset_accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert metrics["labels_per_document"] == pytest.approx(predicted.sum(axis=1).mean())


def test_ranking_metrics_use_probabilities(arrays):
    y_true, probabilities = arrays
    metrics = compute_metrics(y_true, probabilities, 0.5)
    assert metrics["roc_auc_micro"] == pytest.approx(
        roc_auc_score(y_true, probabilities, average="micro")
    )
    assert metrics["roc_auc_macro"] == pytest.approx(
        roc_auc_score(y_true, probabilities, average="macro")
    )
    assert metrics["lrap"] == pytest.approx(
        label_ranking_average_precision_score(y_true, probabilities)
    )
    # The notebook computed AUC on 0/1 predictions; on probabilities thresholds do not matter.
    assert compute_metrics(y_true, probabilities, 0.2)["roc_auc_micro"] == metrics["roc_auc_micro"]


def test_macro_averages_skip_the_same_absent_labels(arrays):
    """A label without positives (or without negatives) in the split is left out of macro-F1,
    macro precision/recall and macro ROC-AUC alike; micro-F1 still counts its false positives."""
    y_true, probabilities = arrays
    y_true = y_true.copy()
    y_true[:, 3] = 0  # absent from the split; still predicted for some documents
    y_true[:, 5] = 1  # in every document
    keep = [0, 1, 2, 4, 6]
    predicted = (probabilities >= 0.5).astype(int)
    assert predicted[:, 3].any()
    metrics = compute_metrics(y_true, probabilities)
    assert metrics["macro_labels"] == 5
    assert metrics["roc_auc_macro"] == pytest.approx(
        roc_auc_score(y_true[:, keep], probabilities[:, keep], average="macro")
    )
    for name, score in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        assert metrics[f"macro_{name}"] == pytest.approx(
            score(y_true[:, keep], predicted[:, keep], average="macro", zero_division=0)
        )
    assert metrics["micro_f1"] == pytest.approx(f1_score(y_true, predicted, average="micro"))
    none = compute_metrics(np.zeros((3, 2)), np.full((3, 2), 0.4))
    assert np.isnan(none["macro_f1"]) and np.isnan(none["roc_auc_macro"])


def test_trainer_metrics_are_the_metrics_at_0_5_of_the_sigmoid(arrays):
    y_true, probabilities = arrays
    probabilities = np.clip(probabilities, 0.01, 0.99)
    logits = np.log(probabilities / (1 - probabilities))
    prediction = SimpleNamespace(predictions=logits.astype(np.float32), label_ids=y_true)
    expected = compute_metrics(y_true, probabilities, 0.5)
    assert dev_metrics(prediction) == pytest.approx(expected, rel=1e-5)


def test_r_precision_by_hand():
    y_true = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    probabilities = np.array([[0.9, 0.8, 0.1, 0.0], [0.3, 0.2, 0.1, 0.0], [0.5, 0.5, 0.5, 0.5]])
    # doc 1: top-2 = {0, 1}, one of two right -> 0.5; doc 2: top-1 = {0}, wrong -> 0; doc 3 skipped.
    assert r_precision(y_true, probabilities) == pytest.approx(0.25)


def test_per_label_rows_agree_with_sklearn(arrays):
    y_true, probabilities = arrays
    names = [f"l{i}" for i in range(7)]
    rows = per_label_metrics(y_true, probabilities, 0.5, names)
    predicted = (probabilities >= 0.5).astype(int)
    expected_f1 = f1_score(y_true, predicted, average=None, zero_division=0)
    assert [row["name"] for row in rows] == names
    assert [row["f1"] for row in rows] == pytest.approx(list(expected_f1))
    assert [row["support"] for row in rows] == list(y_true.sum(axis=0))


def test_at_least_one_rule_fills_empty_predictions():
    y_true = np.array([[1, 0], [0, 1]])
    probabilities = np.array([[0.4, 0.1], [0.2, 0.3]])
    assert compute_metrics(y_true, probabilities, 0.5)["micro_f1"] == 0.0
    with_rule = compute_metrics(y_true, probabilities, 0.5, at_least_one=True)
    assert with_rule["micro_f1"] == 1.0
    assert with_rule["empty_predictions"] == 0.0


def _calibrated_badly(seed: int, documents: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Three labels whose scores separate well, each around a different cut-off; one rare label."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random((documents, 4)) < 0.35).astype(int)
    y_true[:, 3] = 0
    y_true[:5, 3] = 1
    centres = np.array([0.2, 0.5, 0.8, 0.5])
    noise = rng.normal(0, 0.05, y_true.shape)
    probabilities = np.clip(centres + np.where(y_true == 1, 0.1, -0.1) + noise, 0.001, 0.999)
    return y_true, probabilities


def test_tuning_raises_micro_f1_and_respects_min_positives():
    y_true, probabilities = _calibrated_badly(1)
    names = ["low", "mid", "high", "rare"]
    result = tune_thresholds(y_true, probabilities, names, min_positives=20)
    assert result.micro_f1_tuned > result.micro_f1_global > result.micro_f1_default
    assert result.micro_f1_tuned > 0.95
    per_label = result.thresholds.per_label
    assert "rare" not in per_label  # 5 positives < 20: keeps the global threshold
    assert per_label["low"] < result.thresholds.global_threshold < per_label["high"]
    # The thresholds carry over to fresh data drawn the same way.
    y_new, p_new = _calibrated_badly(2)
    vector = [result.thresholds.for_label(name) for name in names]
    assert (
        compute_metrics(y_new, p_new, np.array(vector))["micro_f1"]
        > compute_metrics(y_new, p_new)["micro_f1"]
    )


def test_at_least_one_is_chosen_when_it_helps():
    """Half the documents score their one label at 0.3, the others at 0.9 beside two at 0.6: no
    threshold fits both, but a high one plus the at-least-one rule labels every document right."""
    y_true = np.tile(np.eye(3, dtype=int), (20, 1))
    probabilities = np.where(y_true == 1, 0.3, 0.05)
    probabilities[30:] = np.where(y_true[30:] == 1, 0.9, 0.6)
    result = tune_thresholds(y_true, probabilities, ["a", "b", "c"], min_positives=1000)
    assert result.thresholds.at_least_one
    assert result.micro_f1_tuned == pytest.approx(1.0)
    forced_off = tune_thresholds(
        y_true, probabilities, ["a", "b", "c"], min_positives=1000, at_least_one=False
    )
    assert not forced_off.thresholds.at_least_one
    assert forced_off.micro_f1_tuned < 0.7


def test_global_curve_peaks_at_the_tuned_global(arrays):
    y_true, probabilities = arrays
    grid, scores = global_curve(y_true, probabilities)
    result = tune_thresholds(
        y_true, probabilities, [str(i) for i in range(7)], min_positives=10_000
    )
    assert result.thresholds.global_threshold == pytest.approx(grid[np.argmax(scores)])
    assert result.micro_f1_global == pytest.approx(scores.max())
