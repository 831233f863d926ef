"""Combine the probabilities of a document's windows (chunk mode) into the document's
(:func:`aggregate`, :class:`WindowCollector`)."""

from typing import Literal

import numpy as np

Aggregation = Literal["first-max", "max", "mean"]


def aggregate(window_probabilities: np.ndarray, how: Aggregation = "first-max") -> np.ndarray:
    """``(windows x labels)``, in document order → ``(labels,)`` float32.

    ``max``: a label is as likely as in the window that shows it most (a topic that appears in
    one part of a long act still applies to the act). ``mean``: the average over windows.
    ``first-max`` (the default): the mean of the first window (title, preamble: where an act
    says what it is about) and the max over all windows; it keeps the first window's
    calibration, which the checkpoint's thresholds were tuned on, and still lets a topic of the
    body raise a label. On EUR-Lex it is the best rule on dev and on test
    (bench/long_documents.py, docs/performance.md). All work on probabilities, so a document
    scored in windows gets exactly what scoring each window alone and combining the results
    gives.
    """
    window_probabilities = np.asarray(window_probabilities, dtype=np.float32)
    if window_probabilities.ndim != 2 or len(window_probabilities) == 0:
        raise ValueError("expected a non-empty (windows x labels) array")
    if how == "max":
        return window_probabilities.max(axis=0)
    if how == "first-max":
        return (window_probabilities[0] + window_probabilities.max(axis=0)) / 2
    if how == "mean":
        return window_probabilities.mean(axis=0, dtype=np.float64).astype(np.float32)
    raise ValueError(f"unknown aggregation {how!r}")


class WindowCollector:
    """Collects the scored windows of one document, in any order, until all have arrived."""

    __slots__ = ("_rows", "_missing", "n_windows")

    def __init__(self, n_windows: int, n_labels: int) -> None:
        if n_windows < 1:
            raise ValueError("a document has at least one window")
        self.n_windows = n_windows
        self._rows = np.empty((n_windows, n_labels), dtype=np.float32)
        self._missing = set(range(n_windows))

    def add(self, window: int, probabilities: np.ndarray) -> bool:
        """Store one window's probabilities; True once every window is in."""
        if window not in self._missing:
            raise ValueError(f"window {window} was already scored or does not exist")
        self._rows[window] = probabilities
        self._missing.discard(window)
        return not self._missing

    @property
    def complete(self) -> bool:
        return not self._missing

    def result(self, how: Aggregation = "first-max") -> np.ndarray:
        if self._missing:
            raise ValueError(f"windows {sorted(self._missing)} are not scored yet")
        return aggregate(self._rows, how)
