"""Evaluation report files: metrics JSON, a per-label table and a PNG chart."""

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from model_training.evaluation import Scored  # noqa: E402
from model_training.thresholds import global_curve  # noqa: E402

PER_LABEL_FIELDS = ("id", "name", "support", "threshold", "precision", "recall", "f1", "f1_at_0.5")


def write_report(scored: Scored, summary: dict[str, Any], report_dir: Path) -> list[Path]:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    tuned = scored.per_label(tuned=True)
    default = scored.per_label(tuned=False)
    rows = [{**row, "f1_at_0.5": base["f1"]} for row, base in zip(tuned, default, strict=True)]
    metrics_path = report_dir / "metrics.json"
    metrics_path.write_bytes(
        orjson.dumps({**summary, "per_label": rows}, option=orjson.OPT_INDENT_2)
    )
    table_path = report_dir / "per_label.csv"
    with table_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_LABEL_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(row[key]) for key in PER_LABEL_FIELDS})
    chart_path = report_dir / "per_label_f1.png"
    _chart(scored, rows, chart_path)
    return [metrics_path, table_path, chart_path]


def _cell(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else value


def _chart(scored: Scored, rows: list[dict[str, Any]], path: Path) -> None:
    figure, (bars, curve) = plt.subplots(
        1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    positions = np.arange(len(rows))
    bars.barh(
        positions - 0.2, [row["f1_at_0.5"] for row in rows], height=0.4, label="threshold 0.5"
    )
    bars.barh(positions + 0.2, [row["f1"] for row in rows], height=0.4, label="tuned thresholds")
    bars.set_yticks(positions, [f"{row['name']} ({row['support']})" for row in rows], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.set_xlabel("F1")
    bars.set_title("Per-label F1 (support in brackets)")
    bars.legend(loc="lower right")
    grid, scores = global_curve(scored.labels, scored.probabilities)
    curve.plot(grid, scores, color="black")
    tuned_global = scored.manifest.thresholds.global_threshold
    for value, style, text in (
        (0.5, ":", "0.5"),
        (tuned_global, "--", f"tuned global {tuned_global:.2f}"),
    ):
        curve.axvline(value, linestyle=style, color="grey", label=text)
    curve.set_xlabel("global threshold")
    curve.set_ylabel("micro-F1")
    curve.set_title("Micro-F1 against one global threshold")
    curve.legend(loc="lower center")
    figure.suptitle(f"{scored.manifest.name} {scored.manifest.version} on {scored.split.source}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
