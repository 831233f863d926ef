"""Turn probabilities into a label set: per-label thresholds and the optional at-least-one rule."""

import numpy as np


def apply_thresholds(
    probabilities: np.ndarray, thresholds: np.ndarray, *, at_least_one: bool = False
) -> np.ndarray:
    """Boolean predictions of shape ``probabilities.shape`` (documents x labels).

    A label is predicted when its probability is ``>=`` its threshold. With ``at_least_one``, a
    document with no label above threshold gets its single highest-scoring label.
    """
    probabilities = np.asarray(probabilities)
    predicted = probabilities >= np.asarray(thresholds)[None, :]
    if at_least_one and probabilities.size:
        empty = ~predicted.any(axis=1)
        predicted[empty, probabilities[empty].argmax(axis=1)] = True
    return predicted
