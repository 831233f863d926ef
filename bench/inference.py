"""Inference speed and quality, engine-only: a naive worker, the notebook's way and the engine.

    python bench/inference.py [--quick] [--json] [--model DIR] [--max-length N] [--n N]
                              [--rows naive,engine-bf16,...] [--data FILE] [--threads N]

The same documents (the first N of ``../shared/data/eurlex57k/test.jsonl.gz``; all 4,734 in a full
run, 300 with ``--quick``) and the same checkpoint (default: ``$EUROVOC_CACHE/models/cpu-quick``,
at its own max length) go through every row; each row runs in a fresh process (so its peak RSS
is its own and no row warms the next one's caches), one after the other, model load and warm-up
excluded from the timed part:

- ``naive``: a transformers ``pipeline`` called once per document, fp32;
- ``notebook``: fixed padding to the max length, batches of 16 in input order, fp32;
- ``engine-fp32``, ``engine-bf16``: the worker's engine (bf16 only where the device computes it
  natively: a CUDA GPU or a CPU with AVX512-BF16/AMX; elsewhere the row is skipped and says why);
- ``engine-<dtype>-chunk-first-max`` / ``-chunk-max`` / ``-chunk-mean``: the engine reading long
  documents in up to ``max_chunks`` windows (the default 4; the full run in docs/performance.md
  was taken with 8 for max and mean);
- ``engine-<dtype>-batch16384``: the engine with the large batch budget a GPU needs (the CPU
  default is smaller);
- ``mixed-notebook``, ``mixed-engine-<dtype>[-batch16384]``: a mixed stream (half full documents,
  half titles only, interleaved), where dynamic padding matters.

Per row: docs/s, tokens/s (real tokens the model read), padding efficiency (real / computed
tokens), p50/p99 batch latency (one pipeline call for ``naive``), peak RSS and micro-F1 at the
checkpoint's thresholds on the measured documents. Ratios are taken against ``naive`` of the same
run. Writes ``bench/results/inference.json`` and ``.png`` (``inference-quick.*`` with
``--quick``); with ``--json`` the last line of stdout is one JSON object:
``{"rows": [{"name": "naive", "docs_per_s": ..., "micro_f1": ...}, ...], "machine": {...}, ...}``.
"""

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import DEFAULT_DATA, DEFAULT_MODEL, RESULTS, save_figure  # noqa: E402

from worker.inference.cpu_resources import cpu_computes_bf16, usable_cpus  # noqa: E402

logger = logging.getLogger("bench.inference")

QUICK_DOCUMENTS = 300
LARGE_BATCH_TOKENS = 16384
TARGET_SPEEDUP, AIM_SPEEDUP, MAX_F1_LOSS, MIN_MIXED_EFFICIENCY = 2.0, 2.5, 0.005, 0.9


def row_specs(bf16: bool, chunk_aggregations: tuple[str, ...]) -> dict[str, dict]:
    """Row name -> what it runs (``kind``, engine settings, ``mixed`` stream, ``skip`` reason)."""
    best = "bf16" if bf16 else "fp32"
    best_dtype = "bfloat16" if bf16 else "float32"
    specs: dict[str, dict] = {
        "naive": {"kind": "naive"},
        "notebook": {"kind": "notebook"},
        "engine-fp32": {"kind": "engine", "settings": {"dtype": "float32"}},
        "engine-bf16": {"kind": "engine", "settings": {"dtype": "bfloat16"}},
    }
    if not bf16:
        specs["engine-bf16"]["skip"] = "this device has no native bf16 arithmetic"
    for how in chunk_aggregations:
        specs[f"engine-{best}-chunk-{how}"] = {"kind": "engine", "settings": {
            "dtype": best_dtype, "long_documents": "chunk", "chunk_aggregation": how}}
    # the budget GPUs need, on this device: what a smaller CPU default buys
    specs[f"engine-{best}-batch{LARGE_BATCH_TOKENS}"] = {"kind": "engine", "settings": {
        "dtype": best_dtype, "max_batch_tokens": LARGE_BATCH_TOKENS}}
    specs["mixed-notebook"] = {"kind": "notebook", "mixed": True}
    specs[f"mixed-engine-{best}"] = {"kind": "engine", "mixed": True,
                                     "settings": {"dtype": best_dtype}}
    specs[f"mixed-engine-{best}-batch{LARGE_BATCH_TOKENS}"] = {
        "kind": "engine", "mixed": True,
        "settings": {"dtype": best_dtype, "max_batch_tokens": LARGE_BATCH_TOKENS}}
    return specs


def machine_info(device: str) -> dict:
    import torch
    import transformers

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu_model": cpu_model or platform.processor(), "cpu_count": os.cpu_count(),
            "cpus_usable": usable_cpus(), "cpu_native_bf16": cpu_computes_bf16(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "device": device, "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# -- one row, in its own process ------------------------------------------------------------


def _percentile_ms(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)) * 1000, 2) if values else 0.0


def summarise(name: str, spec: dict, result, labels, manifest) -> dict:
    """The row's public numbers from a ``RowResult``."""
    import numpy as np
    from sklearn.metrics import f1_score

    from worker.inference.decision import apply_thresholds

    documents = len(result.probabilities)
    tokens = sum(batch.tokens for batch in result.batches)
    padded = sum(batch.padded_tokens for batch in result.batches)
    latencies = [batch.seconds for batch in result.batches]
    scored = ~np.isnan(result.probabilities).any(axis=1)
    predicted = apply_thresholds(result.probabilities[scored],
                                 np.asarray(manifest.threshold_vector()),
                                 at_least_one=manifest.thresholds.at_least_one)
    micro, macro = (float(f1_score(labels[scored], predicted, average=average, zero_division=0))
                    for average in ("micro", "macro"))
    settings = spec.get("settings", {})
    return {
        "name": name,
        "kind": spec["kind"],
        "stream": "mixed" if spec.get("mixed") else "documents",
        "dtype": result.dtype,
        "long_documents": settings.get("long_documents", "truncate"),
        "chunk_aggregation": settings.get("chunk_aggregation"),
        "documents": documents,
        "docs_per_s": round(documents / result.seconds, 2),
        "tokens_per_s": round(tokens / result.seconds, 1),
        "padding_efficiency": round(tokens / padded, 4) if padded else None,
        "batch_latency_ms": {"p50": _percentile_ms(latencies, 50),
                             "p99": _percentile_ms(latencies, 99)},
        "batches": len(result.batches),
        "sequences_per_document": round(
            sum(batch.sequences for batch in result.batches) / documents, 3),
        "mean_tokens_per_document": round(tokens / documents, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "micro_f1": round(micro, 4),
        "macro_f1": round(macro, 4),
        "seconds": round(result.seconds, 3),
        "load_and_warmup_seconds": round(result.load_seconds, 2),
        "torch_threads": result.torch_threads,
        **result.extra,
    }


def run_row(name: str, spec: dict, args: argparse.Namespace) -> dict:
    import numpy as np
    from inference_rows import (
        mixed_stream,
        read_labelled,
        run_engine,
        run_naive,
        run_notebook,
    )
    from transformers.utils import logging as hf_logging

    from schemas.manifest import read_manifest
    from worker.inference.engine_settings import EngineSettings

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    manifest = read_manifest(args.model)
    max_length = args.max_length or manifest.max_length
    documents = read_labelled(args.data, args.n)
    if spec.get("mixed"):
        documents = mixed_stream(documents)
    labels = np.zeros((len(documents), len(manifest.label_names)), dtype=bool)
    for row, item in enumerate(documents):
        labels[row, list(item.labels)] = True
    if spec["kind"] == "naive":
        result = run_naive(args.model, max_length, documents, args.threads, args.device)
    elif spec["kind"] == "notebook":
        result = run_notebook(args.model, max_length, documents, args.threads, args.device)
    else:
        settings = EngineSettings(model=args.model, max_length=args.max_length,
                                  torch_threads=args.threads, device=args.device,
                                  **spec.get("settings", {}))
        result = run_engine(settings, documents)
    return summarise(name, spec, result, labels, manifest)


# -- the run --------------------------------------------------------------------------------


def child_command(name: str, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
               "--model", str(args.model), "--data", str(args.data), "--threads",
               str(args.threads), "--device", args.device]
    if args.n is not None:
        command += ["--n", str(args.n)]
    if args.max_length is not None:
        command += ["--max-length", str(args.max_length)]
    return command


def run_in_child(name: str, args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(child_command(name, args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"row {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    logger.info("%-28s %8.1f docs/s  micro-F1 %.4f  (%.0fs)", name, row["docs_per_s"],
                row["micro_f1"], time.perf_counter() - started)
    return row


def compare(rows: list[dict]) -> dict:
    """Ratios against ``naive`` and the issue's targets."""
    by_name = {row["name"]: row for row in rows if "skipped" not in row}
    naive = by_name.get("naive")
    if naive is None:
        return {}
    for row in by_name.values():
        row["speedup_vs_naive"] = round(row["docs_per_s"] / naive["docs_per_s"], 3)
        row["micro_f1_delta_vs_naive_points"] = round(100 * (row["micro_f1"]
                                                            - naive["micro_f1"]), 2)
    plain = naive["stream"]
    eligible = [row for row in by_name.values() if row["kind"] == "engine"
                and row["stream"] == plain and row["micro_f1"] >= naive["micro_f1"] - MAX_F1_LOSS]
    best = max(eligible, key=lambda row: row["docs_per_s"], default=None)
    mixed = [row for row in by_name.values() if row["kind"] == "engine"
             and row["stream"] == "mixed" and "batch" not in row["name"]]
    return {
        "best_engine_row": best and best["name"],
        "best_speedup_vs_naive": best and best["speedup_vs_naive"],
        "speedup_target": TARGET_SPEEDUP, "speedup_aim": AIM_SPEEDUP,
        "speedup_target_met": bool(best and best["speedup_vs_naive"] >= TARGET_SPEEDUP),
        "max_micro_f1_loss_points": 100 * MAX_F1_LOSS,
        "mixed_padding_efficiency": mixed[0]["padding_efficiency"] if mixed else None,
        "mixed_padding_efficiency_target": MIN_MIXED_EFFICIENCY,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in result["rows"] if "skipped" not in row]
    names = [row["name"] for row in rows]
    colors = ["#7f8c8d" if row["kind"] != "engine" else "#2e86c1" for row in rows]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    panels = [
        ("docs_per_s", "documents / s", "%.1f"),
        ("micro_f1", "micro-F1 (checkpoint thresholds)", "%.3f"),
        ("padding_efficiency", "padding efficiency (real / computed tokens)", "%.2f"),
        ("peak_rss_mb", "peak RSS (MB)", "%.0f"),
    ]
    for axis, (key, title, fmt) in zip(axes.flat, panels, strict=True):
        values = [row[key] or 0 for row in rows]
        bars = axis.barh(names, values, color=colors)
        axis.bar_label(bars, fmt=fmt, fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.invert_yaxis()
        axis.tick_params(labelsize=8)
        axis.set_xlim(0, max(values) * 1.2 or 1)
    machine = result["machine"]
    save_figure(
        fig, f"{result['model']['name']} ({result['model']['max_length']} tokens), "
        f"{result['documents']} EUR-Lex test documents, {machine['cpu_model']} "
        f"({machine['cpus_usable']} cores, {result['threads']} torch threads)", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"The first {QUICK_DOCUMENTS} documents only (unless --n).")
    parser.add_argument("--json", action="store_true",
                        help="Print the result as one JSON object on the last line of stdout.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--max-length", type=int, default=None,
                        help="Tokens per sequence (default: the checkpoint's).")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=None, help="Documents (default: all).")
    parser.add_argument("--rows", default=None, help="Comma-separated row names (default: all).")
    parser.add_argument("--chunk-aggregations", default="first-max,max,mean",
                        help="Aggregations of the chunk rows (default %(default)s).")
    parser.add_argument("--threads", type=int, default=usable_cpus(),
                        help="torch threads of every row (default: the usable cores).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--output", type=Path, default=None,
                        help="Result JSON (default: bench/results/inference[-quick].json).")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and args.n is None:
        args.n = QUICK_DOCUMENTS
    bf16 = cpu_computes_bf16() if args.device == "cpu" else True
    specs = row_specs(bf16, tuple(args.chunk_aggregations.split(",")))
    if args.child:
        print(json.dumps(run_row(args.child, specs[args.child], args)))
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    wanted = args.rows.split(",") if args.rows else list(specs)
    unknown = [name for name in wanted if name not in specs]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(specs)}")
    started_at = datetime.now(UTC)
    machine = machine_info(args.device)
    rows = []
    for name in wanted:
        if "skip" in specs[name]:
            rows.append({"name": name, "skipped": specs[name]["skip"]})
            continue
        rows.append(run_in_child(name, args))
    from schemas.manifest import read_manifest

    manifest = read_manifest(args.model)
    result = {
        "benchmark": "inference",
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/inference.py " + " ".join(argv if argv is not None
                                                           else sys.argv[1:]),
        "quick": args.quick,
        "machine": machine | {"load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "model": {"name": manifest.name, "version": manifest.version, "path": str(args.model),
                  "base_model": manifest.base_model,
                  "max_length": args.max_length or manifest.max_length},
        "data": str(args.data),
        "documents": max((row.get("documents", 0) for row in rows), default=0),
        "threads": args.threads,
        "rows": rows,
    }
    result["comparison"] = compare(rows)
    output = args.output or RESULTS / ("inference-quick.json" if args.quick else "inference.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, output.with_suffix(".png"))
    if args.json:
        print(json.dumps(result))
    else:
        for row in rows:
            if "skipped" in row:
                print(f"{row['name']:<28} skipped: {row['skipped']}")
                continue
            print(f"{row['name']:<28} {row['docs_per_s']:>8.1f} docs/s "
                  f"x{row.get('speedup_vs_naive', 0):.2f}  F1 {row['micro_f1']:.4f}  "
                  f"pad {row['padding_efficiency']:.2f}  p99 {row['batch_latency_ms']['p99']} ms")
        print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
