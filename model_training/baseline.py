"""The TF-IDF + logistic-regression baseline, measured with the same metrics as the transformers.

Word 1-2-gram TF-IDF over title + text (the text the transformers read, ``model_text``),
one-vs-rest logistic regression, one global threshold tuned on dev.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import parallel_config
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from model_training.documents import Split
from model_training.metrics import compute_metrics
from model_training.thresholds import global_curve

logger = logging.getLogger(__name__)

BASELINE_NAME = "tfidf-logreg"


@dataclass(frozen=True)
class BaselineSettings:
    max_features: int = 200_000
    min_df: int = 3
    c: float = 10.0
    jobs: int = 2


def run_baseline(
    train: Split, dev: Split, test: Split, num_labels: int, settings: BaselineSettings
) -> dict[str, Any]:
    started = time.monotonic()
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        min_df=settings.min_df,
        max_features=settings.max_features,
        sublinear_tf=True,
    )
    features = vectorizer.fit_transform(document.model_text for document in train.documents)
    y_train = train.label_matrix(num_labels)
    classifier = OneVsRestClassifier(
        LogisticRegression(C=settings.c, solver="liblinear"), n_jobs=settings.jobs
    )
    # No memory-mapping to workers: liblinear needs writable arrays.
    with parallel_config(max_nbytes=None):
        classifier.fit(features, y_train)
    train_seconds = time.monotonic() - started
    logger.info("baseline trained in %.0f s on %d documents", train_seconds, len(train))

    def probabilities(split: Split) -> np.ndarray:
        return classifier.predict_proba(
            vectorizer.transform(d.model_text for d in split.documents)
        )

    dev_labels, dev_probabilities = dev.label_matrix(num_labels), probabilities(dev)
    grid, scores = global_curve(dev_labels, dev_probabilities)
    threshold = float(grid[int(np.argmax(scores))])
    test_labels, test_probabilities = test.label_matrix(num_labels), probabilities(test)
    return {
        "model": BASELINE_NAME,
        "settings": {
            **settings.__dict__,
            "ngram_range": [1, 2],
            "sublinear_tf": True,
            "text": "title + text",
        },
        "data": test.source,
        "train_documents": len(train),
        "train_seconds": round(train_seconds, 1),
        "thresholds": {"global": threshold, "per_label": {}, "at_least_one": False},
        "dev": {
            "0.5": compute_metrics(dev_labels, dev_probabilities, 0.5),
            "tuned": compute_metrics(dev_labels, dev_probabilities, threshold),
        },
        "metrics": {
            "0.5": compute_metrics(test_labels, test_probabilities, 0.5),
            "tuned": compute_metrics(test_labels, test_probabilities, threshold),
        },
    }
