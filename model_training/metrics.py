"""Every evaluation number, computed in one place from labels, probabilities and thresholds.

Ranking metrics (ROC-AUC, R-Precision, label-ranking average precision) use the probabilities;
set metrics (F1, precision, recall, subset accuracy) use the thresholded predictions, made by the
worker's own ``apply_thresholds``.

Macro averages (F1, precision, recall, ROC-AUC) all run over the same labels: those the split can
measure, with at least one positive and one negative document (``macro_labels`` counts them). A
label absent from a split has no recall and no ROC-AUC; counting it as F1 0 in one average and
skipping it in the other would make the two disagree, more so with many rare (level-2) labels.
Micro averages pool every decision (a false positive of an absent label still counts) and weighted
averages weigh labels by their positives, so neither needs the rule.
"""

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.metrics import (
    accuracy_score,
    label_ranking_average_precision_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from worker.inference.decision import apply_thresholds


def threshold_vector(thresholds: float | np.ndarray, num_labels: int) -> np.ndarray:
    vector = np.asarray(thresholds, dtype=np.float64)
    return np.full(num_labels, float(vector)) if vector.ndim == 0 else vector


def predict(
    probabilities: np.ndarray, thresholds: float | np.ndarray, *, at_least_one: bool = False
) -> np.ndarray:
    vector = threshold_vector(thresholds, probabilities.shape[1])
    return apply_thresholds(probabilities, vector, at_least_one=at_least_one)


def r_precision(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over documents with R > 0 true labels of the precision of their top-R scored labels."""
    y_true = np.asarray(y_true).astype(bool)
    ranks = np.argsort(-probabilities, axis=1, kind="stable")
    counts = y_true.sum(axis=1)
    scores = [
        y_true[row, ranks[row, :count]].mean() for row, count in enumerate(counts) if count > 0
    ]
    return float(np.mean(scores)) if scores else 0.0


def measurable_labels(y_true: np.ndarray) -> np.ndarray:
    """Indices of the labels with both a positive and a negative document in ``y_true``."""
    y_true = np.asarray(y_true)
    return np.flatnonzero((y_true.min(axis=0) == 0) & (y_true.max(axis=0) == 1))


def roc_auc(y_true: np.ndarray, probabilities: np.ndarray, average: str) -> float:
    """ROC-AUC on probabilities; ``macro`` averages the measurable labels."""
    labels = measurable_labels(y_true)
    if not len(labels):
        return float("nan")
    if average == "macro":
        return float(roc_auc_score(y_true[:, labels], probabilities[:, labels], average="macro"))
    return float(roc_auc_score(y_true, probabilities, average="micro"))


def compute_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    thresholds: float | np.ndarray = 0.5,
    *,
    at_least_one: bool = False,
) -> dict[str, float]:
    """All aggregate metrics for one split at the given thresholds."""
    y_true = np.asarray(y_true).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if y_true.shape != probabilities.shape or y_true.ndim != 2:
        raise ValueError(f"labels {y_true.shape} and probabilities {probabilities.shape} differ")
    predicted = predict(probabilities, thresholds, at_least_one=at_least_one).astype(np.int64)
    result: dict[str, float] = {}
    measurable = measurable_labels(y_true)
    for average in ("micro", "macro", "weighted"):
        if average == "macro" and not len(measurable):
            precision = recall = f1 = float("nan")
        else:
            precision, recall, f1, _ = precision_recall_fscore_support(
                y_true,
                predicted,
                labels=measurable if average == "macro" else None,
                average=average,
                zero_division=0,
            )
        result[f"{average}_f1"] = float(f1)
        result[f"{average}_precision"] = float(precision)
        result[f"{average}_recall"] = float(recall)
    result["macro_labels"] = float(len(measurable))
    result["roc_auc_micro"] = roc_auc(y_true, probabilities, "micro")
    result["roc_auc_macro"] = roc_auc(y_true, probabilities, "macro")
    result["subset_accuracy"] = float(accuracy_score(y_true, predicted))
    result["r_precision"] = r_precision(y_true, probabilities)
    result["lrap"] = float(label_ranking_average_precision_score(y_true, probabilities))
    result["labels_per_document"] = float(predicted.sum(axis=1).mean())
    result["empty_predictions"] = float((predicted.sum(axis=1) == 0).mean())
    result["documents"] = float(len(y_true))
    return result


def per_label_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    thresholds: float | np.ndarray,
    label_names: list[str],
    *,
    at_least_one: bool = False,
) -> list[dict[str, float | str | int]]:
    """Precision, recall, F1, support and the threshold used, one row per label."""
    y_true = np.asarray(y_true).astype(np.int64)
    vector = threshold_vector(thresholds, y_true.shape[1])
    predicted = predict(probabilities, vector, at_least_one=at_least_one).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, average=None, zero_division=0
    )
    return [
        {
            "id": index,
            "name": name,
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "support": int(support[index]),
            "threshold": float(vector[index]),
        }
        for index, name in enumerate(label_names)
    ]


def dev_metrics(prediction: Any) -> dict[str, float]:
    """The Trainer's ``compute_metrics``: every metric at threshold 0.5 from an
    ``EvalPrediction`` (logits and multi-hot labels)."""
    logits = np.asarray(prediction.predictions, dtype=np.float64)
    return compute_metrics(prediction.label_ids, expit(logits), 0.5)
