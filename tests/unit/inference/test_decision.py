"""apply_thresholds: per-label thresholds, the >= boundary and the at-least-one rule."""

import numpy as np

from worker.inference.decision import apply_thresholds


def test_each_label_uses_its_own_threshold_inclusive():
    probabilities = np.array([[0.2, 0.5, 0.9], [0.31, 0.49, 0.95]])
    thresholds = np.array([0.3, 0.5, 0.96])
    predicted = apply_thresholds(probabilities, thresholds)
    assert predicted.dtype == bool
    assert predicted.tolist() == [[False, True, False], [True, False, False]]


def test_at_least_one_adds_only_the_top_label_to_empty_rows():
    probabilities = np.array([[0.1, 0.4, 0.2], [0.6, 0.7, 0.1], [0.0, 0.0, 0.0]])
    thresholds = np.full(3, 0.5)
    assert apply_thresholds(probabilities, thresholds).tolist() == [
        [False, False, False],
        [True, True, False],
        [False, False, False],
    ]
    assert apply_thresholds(probabilities, thresholds, at_least_one=True).tolist() == [
        [False, True, False],
        [True, True, False],
        [True, False, False],
    ]


def test_no_documents():
    empty = np.zeros((0, 3))
    assert apply_thresholds(empty, np.full(3, 0.5), at_least_one=True).shape == (0, 3)


def test_input_is_not_modified():
    probabilities = np.array([[0.1, 0.2]])
    apply_thresholds(probabilities, np.array([0.5, 0.5]), at_least_one=True)
    assert probabilities.tolist() == [[0.1, 0.2]]
