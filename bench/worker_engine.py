"""Throughput of the inference engine on files: documents/s of ``classify`` (no Kafka).

    python bench/worker_engine.py [--model DIR] [--n 500] [--data FILE] [engine flags...]

Runs exactly what ``eurovoc-worker classify`` runs (read + validate + tokenize + batch + score +
build + write, in input order) on the first N documents of the shared EURLEX57K test split, after
loading and warming the model up (load time is reported separately). Prints one JSON object with
docs/s and the batching metrics; engine flags (``--device``, ``--max-batch-tokens``, ...) make it
a tuning tool. ``bench/worker_throughput.py`` runs the same measurement next to the Kafka worker.
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import DEFAULT_DATA, DEFAULT_MODEL, batch_histograms  # noqa: E402

from worker.commands.classify import classify_file  # noqa: E402
from worker.inference.engine import InferenceEngine  # noqa: E402
from worker.inference.engine_metrics import EngineMetrics  # noqa: E402
from worker.inference.engine_settings import EngineSettings, dtype_name  # noqa: E402
from worker.settings.engine_flags import add_engine_arguments, settings_from_args  # noqa: E402


def classify_benchmark(
    settings: EngineSettings, data: Path, n: int, window=contextlib.nullcontext
) -> dict:
    """Load and warm up the engine (timed apart), then ``classify_file`` the first ``n``
    documents of ``data``; ``window()`` is entered around the timed part only."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    metrics = EngineMetrics()
    started = time.perf_counter()
    engine = InferenceEngine.from_settings(settings, metrics)
    load_seconds = time.perf_counter() - started
    engine.start()
    try:
        with tempfile.TemporaryDirectory() as tmp, window():
            cpu_started = time.process_time()
            summary = classify_file(
                engine, str(data), str(Path(tmp) / "out.jsonl"), limit=n, progress=False
            )
            process_cpu = time.process_time() - cpu_started
    finally:
        engine.stop()
    runner = engine.runner
    return {
        "model": f"{engine.manifest.name} {engine.manifest.version}",
        "base_model": engine.manifest.base_model,
        "device": str(runner.device),
        "device_name": (torch.cuda.get_device_name(runner.device)
                        if runner.device.type == "cuda" else platform.processor() or "cpu"),
        "torch_threads": torch.get_num_threads(),
        "dtype": dtype_name(runner.dtype),
        "max_length": engine.max_length,
        "max_batch_tokens": engine.max_batch_tokens,
        "documents": summary["documents"],
        "failed": summary["failed"],
        "invalid_lines": summary["invalid_lines"],
        "seconds": round(summary["seconds"], 3),
        "docs_per_second": round(summary["docs_per_second"], 2),
        "process_cpu_seconds": round(process_cpu, 2),
        "load_and_warmup_seconds": round(load_seconds, 2),
        "histograms": batch_histograms(metrics.registry.collect()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON-lines input.")
    parser.add_argument("--n", type=int, default=500, help="Documents to classify.")
    add_engine_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(arg == "--model" or arg.startswith("--model=") for arg in argv):
        argv += ["--model", str(DEFAULT_MODEL)]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = settings_from_args(args)
    report = {"benchmark": "worker_engine_classify",
              "long_documents": settings.long_documents,
              "max_batch_size": settings.max_batch_size,
              **classify_benchmark(settings, args.data, args.n)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
