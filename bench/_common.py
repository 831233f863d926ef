"""Pieces shared by the benchmark scripts: default paths and metric summaries."""

import os
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the scripts run as ``python bench/X.py``
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eurlex57k" / "test.jsonl.gz"
DEFAULT_MODEL = (
    Path(os.environ.get("EUROVOC_CACHE") or Path.home() / ".cache" / "eurovoc-stream")
    / "models" / "cpu-quick"
)


def histogram_summary(families: Iterable, name: str) -> dict | None:
    """Count, mean and cumulative buckets of the histogram ``name`` among Prometheus metric
    families: ``registry.collect()`` of a live registry, or
    ``prometheus_client.parser.text_string_to_metric_families`` of a scraped ``/metrics``."""
    for family in families:
        if family.name != name:
            continue
        count = total = 0.0
        buckets: dict[str, float] = {}
        for sample in family.samples:
            if sample.name == f"{name}_count":
                count = sample.value
            elif sample.name == f"{name}_sum":
                total = sample.value
            elif sample.name == f"{name}_bucket":
                buckets[sample.labels["le"]] = sample.value
        return {
            "count": int(count),
            "mean": round(total / count, 4) if count else None,
            "cumulative_buckets": {le: int(value) for le, value in buckets.items()},
        }
    return None


BATCH_HISTOGRAMS = (
    "eurovoc_batch_size",
    "eurovoc_batch_tokens",
    "eurovoc_padding_efficiency",
    "eurovoc_inference_seconds",
    "eurovoc_queue_seconds",
    "eurovoc_tokenize_seconds",
)


def batch_histograms(families: Iterable) -> dict[str, dict | None]:
    """The engine's batching histograms (see worker/runtime/metrics.py) by name."""
    families = list(families)
    return {name: histogram_summary(families, name) for name in BATCH_HISTOGRAMS}


def save_figure(fig, title: str, path: Path) -> None:
    """Title a matplotlib figure, lay it out, write it as a PNG and close it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
