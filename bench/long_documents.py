"""Long documents: truncate against chunking, and how to combine chunk probabilities — quality.

    python bench/long_documents.py [--model DIR] [--data-dir DIR] [--max-chunks 8]
                                   [--stride 64] [--limit N] [--dtype auto]

Scores every window of every document of the dev and test splits once (the engine's own
document tokenizer in chunk mode and its model runner, so the windows are exactly the worker's),
then derives, without scoring again, each rule for 1, 2, 4 ... ``--max-chunks`` windows:

- ``first``: the first window only — what ``long_documents=truncate`` computes;
- ``max``, ``mean``: the engine's chunk aggregations;
- ``top2-mean``, ``top3-mean``: per label, the mean of its k highest window probabilities (a
  topic must show in more than one window, but not in all of them);
- ``first-max``: the mean of the first window and the max over all windows.

Each rule is scored on test twice: at the checkpoint's thresholds (what the worker would publish
today: they were tuned on first-window probabilities) and at thresholds re-tuned on dev for that
rule (what it would publish once the thresholds come from the same inference path). Rules are
chosen on dev only; test is reported. Cost: the windows a rule reads per document (the model's
work is proportional); docs/s of each mode come from ``bench/inference.py``.

Writes bench/results/long_documents.json and .png.
"""

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from _common import DEFAULT_DATA, DEFAULT_MODEL, RESULTS, save_figure  # noqa: E402
from inference_rows import read_labelled  # noqa: E402

logger = logging.getLogger("bench.long_documents")

RULES = ("first", "max", "mean", "top2-mean", "top3-mean", "first-max")
SORT_BATCH_TOKENS = 8192


def combine(windows: np.ndarray, rule: str) -> np.ndarray:
    """``(windows x labels)`` -> ``(labels,)`` by ``rule``."""
    if rule == "first":
        return windows[0]
    if rule == "max":
        return windows.max(axis=0)
    if rule == "mean":
        return windows.mean(axis=0)
    if rule.startswith("top") and rule.endswith("-mean"):
        k = min(int(rule[3:-5]), len(windows))
        return np.sort(windows, axis=0)[-k:].mean(axis=0)
    if rule == "first-max":
        return (windows[0] + windows.max(axis=0)) / 2
    raise ValueError(rule)


def score_windows(engine, documents) -> tuple[list[np.ndarray], float]:
    """Probabilities of every window of every document, scored in length-sorted batches."""
    tokenized = engine.document_tokenizer([item.document for item in documents])
    flat = [(doc, index, ids) for doc, result in enumerate(tokenized)
            for index, ids in enumerate(result.windows)]
    flat.sort(key=lambda entry: len(entry[2]))
    out = [np.zeros((len(result.windows), engine.runner.n_labels), dtype=np.float32)
           for result in tokenized]
    started = time.perf_counter()
    batch: list = []
    for entry in [*flat, None]:
        if entry is not None and (not batch or len(entry[2]) * (len(batch) + 1)
                                  <= SORT_BATCH_TOKENS):
            batch.append(entry)
            continue
        probabilities = engine.runner.score([ids for _, _, ids in batch])
        for (doc, index, _), row in zip(batch, probabilities, strict=True):
            out[doc][index] = row
        batch = [entry] if entry is not None else []
    return out, time.perf_counter() - started


def evaluate(windows, labels, rule, chunks, manifest, tuned=None) -> dict:
    from model_training.metrics import compute_metrics

    probabilities = np.stack([combine(rows[:chunks], rule) for rows in windows])
    thresholds = np.asarray(manifest.threshold_vector())
    at_least_one = manifest.thresholds.at_least_one
    if tuned is not None:
        thresholds, at_least_one = tuned
    metrics = compute_metrics(labels, probabilities, thresholds, at_least_one=at_least_one)
    return {key: round(metrics[key], 4) for key in ("micro_f1", "macro_f1", "roc_auc_micro")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA.parent)
    parser.add_argument("--max-chunks", type=int, default=8)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="Documents per split.")
    parser.add_argument("--output", type=Path, default=RESULTS / "long_documents.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    from model_training.thresholds import threshold_array, tune_thresholds
    from worker.inference.engine import InferenceEngine
    from worker.inference.engine_settings import EngineSettings

    settings = EngineSettings(model=args.model, dtype=args.dtype, long_documents="chunk",
                              max_chunks=args.max_chunks, chunk_stride=args.stride)
    engine = InferenceEngine.from_settings(settings)
    manifest = engine.manifest
    names = manifest.label_names
    splits = {}
    for split in ("dev", "test"):
        documents = read_labelled(args.data_dir / f"{split}.jsonl.gz", args.limit)
        labels = np.zeros((len(documents), len(names)), dtype=bool)
        for row, item in enumerate(documents):
            labels[row, list(item.labels)] = True
        windows, seconds = score_windows(engine, documents)
        counts = np.array([len(rows) for rows in windows])
        logger.info("%s: %d documents, %d windows scored in %.0fs", split, len(documents),
                    counts.sum(), seconds)
        splits[split] = {"windows": windows, "labels": labels, "counts": counts,
                         "seconds": seconds}
    chunk_counts = sorted({1, *[c for c in (2, 4, 8, 16) if c < args.max_chunks],
                           args.max_chunks})
    results = []
    for rule in RULES:
        for chunks in chunk_counts:
            if (chunks == 1) != (rule == "first"):
                continue  # one window: every rule is "first"; "first" reads one window only
            dev, test = splits["dev"], splits["test"]
            dev_probabilities = np.stack([combine(rows[:chunks], rule)
                                          for rows in dev["windows"]])
            tuning = tune_thresholds(dev["labels"], dev_probabilities, names)
            tuned = (threshold_array(tuning.thresholds, names), tuning.thresholds.at_least_one)
            results.append({
                "rule": rule, "max_chunks": chunks,
                "windows_per_document": round(float(np.minimum(test["counts"], chunks).mean()),
                                              3),
                "dev_tuned_micro_f1": round(tuning.micro_f1_tuned, 4),
                "test_checkpoint_thresholds": evaluate(test["windows"], test["labels"], rule,
                                                       chunks, manifest),
                "test_dev_tuned_thresholds": evaluate(test["windows"], test["labels"], rule,
                                                      chunks, manifest, tuned),
            })
            logger.info("%-10s chunks %2d: test micro-F1 %.4f (checkpoint thresholds), %.4f "
                        "(dev-tuned)", rule, chunks,
                        results[-1]["test_checkpoint_thresholds"]["micro_f1"],
                        results[-1]["test_dev_tuned_thresholds"]["micro_f1"])
    test_counts = splits["test"]["counts"]
    report = {
        "benchmark": "long_documents",
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/long_documents.py " + " ".join(argv if argv is not None
                                                                else sys.argv[1:]),
        "model": {"name": manifest.name, "version": manifest.version,
                  "max_length": engine.max_length, "dtype": str(engine.runner.dtype)},
        "stride": args.stride,
        "documents": {split: len(data["labels"]) for split, data in splits.items()},
        "test_windows_histogram": {str(k): int((test_counts == k).sum())
                                   for k in range(1, args.max_chunks + 1)},
        "test_truncated_by_first_window": round(float((test_counts > 1).mean()), 4),
        "best_on_dev": max(results, key=lambda r: r["dev_tuned_micro_f1"]),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.output.with_suffix(".png"))
    print(json.dumps({"best_on_dev": report["best_on_dev"]}))
    return 0


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, key, title in ((axes[0], "test_checkpoint_thresholds", "checkpoint's thresholds"),
                             (axes[1], "test_dev_tuned_thresholds", "thresholds tuned on dev "
                                                                     "for each rule")):
        for rule in RULES:
            points = [(r["windows_per_document"], r[key]["micro_f1"])
                      for r in report["results"] if r["rule"] in (rule, "first")
                      and (r["rule"] == rule or r["max_chunks"] == 1)]
            points.sort()
            axis.plot(*zip(*points, strict=True), marker="o", label=rule)
        axis.set_title(f"test micro-F1, {title}", fontsize=10)
        axis.set_xlabel("windows scored per document (model cost)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("micro-F1")
    axes[0].legend(fontsize=8)
    model = report["model"]
    save_figure(fig, f"Long documents: {model['name']} ({model['max_length']} tokens, stride "
                f"{report['stride']}), {report['documents']['test']} test documents", path)


if __name__ == "__main__":
    sys.exit(main())
