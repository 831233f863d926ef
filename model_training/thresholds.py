"""Tune decision thresholds on dev: a global one, per-label overrides, and the at-least-one rule.

All three maximise dev micro-F1. The global threshold is a grid search; per-label thresholds then
move one label at a time to the grid value that maximises micro-F1 with every other label fixed
(two sweeps of coordinate ascent), only for labels with at least ``min_positives`` positive dev
documents. The at-least-one rule is tuned both ways and kept when it raises dev micro-F1 (or
when forced); with it on, the global search applies the rule too.
"""

import logging
from dataclasses import dataclass

import numpy as np

from model_training.metrics import compute_metrics
from schemas.manifest import Thresholds
from worker.inference.decision import apply_thresholds

logger = logging.getLogger(__name__)

# The ``--at-least-one`` choices as ``tune_thresholds``' argument (auto: tune it both ways).
AT_LEAST_ONE_CHOICES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
MIN_POSITIVES = 20
SWEEPS = 2


@dataclass(frozen=True)
class TuningResult:
    thresholds: Thresholds
    micro_f1_default: float
    micro_f1_global: float
    micro_f1_tuned: float


def _label_counts(
    y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per label and grid value."""
    truth = y_true.astype(bool)[:, :, None]
    predicted = probabilities[:, :, None] >= grid[None, None, :]
    tp = (predicted & truth).sum(axis=0)
    fp = (predicted & ~truth).sum(axis=0)
    fn = (~predicted & truth).sum(axis=0)
    return tp, fp, fn


def _micro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def global_curve(
    y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray = GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Micro-F1 at each global threshold of ``grid``."""
    tp, fp, fn = _label_counts(y_true, probabilities, grid)
    return grid, _micro_f1(tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0))


def _micro_f1_with_rule(y_true: np.ndarray, probabilities: np.ndarray, vector: np.ndarray) -> float:
    predicted = apply_thresholds(probabilities, vector, at_least_one=True)
    tp = (predicted & y_true).sum()
    return float(_micro_f1(tp, (predicted & ~y_true).sum(), (~predicted & y_true).sum()))


def _coordinate_ascent(
    counts: tuple[np.ndarray, np.ndarray, np.ndarray], start: int, tunable: np.ndarray
) -> np.ndarray:
    """Grid index per label, each moved to the value maximising micro-F1 with the others fixed."""
    tp, fp, fn = counts
    labels = np.arange(tp.shape[0])
    chosen = np.full(tp.shape[0], start)
    for _ in range(SWEEPS):
        for label in tunable:
            rest = [
                count[labels, chosen].sum() - count[label, chosen[label]] for count in (tp, fp, fn)
            ]
            scores = _micro_f1(rest[0] + tp[label], rest[1] + fp[label], rest[2] + fn[label])
            if scores.max() > scores[chosen[label]]:
                chosen[label] = int(np.argmax(scores))
    return chosen


def tune_thresholds(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    label_names: list[str],
    *,
    min_positives: int = MIN_POSITIVES,
    at_least_one: bool | None = None,
    grid: np.ndarray = GRID,
) -> TuningResult:
    """Thresholds that maximise micro-F1 on (``y_true``, ``probabilities``).

    ``at_least_one``: ``None`` tunes with and without the rule and keeps the better (ties: without);
    ``True``/``False`` force it.
    """
    y_true = np.asarray(y_true).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    counts = _label_counts(y_true, probabilities, grid)
    plain_curve = _micro_f1(*(count.sum(axis=0) for count in counts))
    tunable = np.flatnonzero(y_true.sum(axis=0) >= min_positives)
    best: tuple[float, bool, int, float, np.ndarray] | None = None
    for rule in [False, True] if at_least_one is None else [at_least_one]:
        curve = plain_curve
        if rule:
            curve = np.array(
                [
                    _micro_f1_with_rule(y_true, probabilities, np.full(len(label_names), g))
                    for g in grid
                ]
            )
        start = int(np.argmax(curve))
        chosen = _coordinate_ascent(counts, start, tunable)
        vector = grid[chosen]
        score = compute_metrics(y_true, probabilities, vector, at_least_one=rule)["micro_f1"]
        if best is None or score > best[0]:
            best = (score, rule, start, float(curve[start]), chosen)
    assert best is not None
    tuned_f1, rule, start, global_f1, chosen = best
    thresholds = Thresholds(
        global_threshold=float(grid[start]),
        per_label={label_names[i]: float(grid[chosen[i]]) for i in np.flatnonzero(chosen != start)},
        at_least_one=rule,
    )
    result = TuningResult(
        thresholds=thresholds,
        micro_f1_default=compute_metrics(y_true, probabilities, 0.5)["micro_f1"],
        micro_f1_global=global_f1,
        micro_f1_tuned=tuned_f1,
    )
    logger.info(
        "thresholds: global %.2f, %d per-label, at_least_one=%s; dev micro-F1 %.4f at 0.5, "
        "%.4f global, %.4f tuned",
        thresholds.global_threshold,
        len(thresholds.per_label),
        rule,
        result.micro_f1_default,
        result.micro_f1_global,
        result.micro_f1_tuned,
    )
    return result


def threshold_array(thresholds: Thresholds, label_names: list[str]) -> np.ndarray:
    return np.array([thresholds.for_label(name) for name in label_names], dtype=np.float64)


def split_metrics(
    split: str,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    thresholds: Thresholds,
    label_names: list[str],
) -> dict[str, dict[str, float]]:
    """A manifest's two metrics records of one split: ``split`` at the tuned thresholds (and the
    at-least-one rule) and ``split@0.5`` at 0.5 for every label."""
    return {
        f"{split}@0.5": compute_metrics(y_true, probabilities, 0.5),
        split: compute_metrics(
            y_true,
            probabilities,
            threshold_array(thresholds, label_names),
            at_least_one=thresholds.at_least_one,
        ),
    }
