"""Throughput of the inference engine on files: documents/s of ``classify`` (no Kafka).

    python bench/worker_engine.py --model DIR [--n 500] [--data FILE] [engine flags...]

Runs exactly what ``eurovoc-worker classify`` runs (read + validate + tokenize + batch + score +
build + write, in input order) on the first N documents of the shared EURLEX57K test split, after
loading and warming the model up (load time is reported separately). Prints one JSON object with
docs/s and the batching metrics, for the lead to combine with the Kafka-path benchmark.
"""

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from worker.classify import add_engine_arguments, classify_file, settings_from_args  # noqa: E402
from worker.engine import InferenceEngine  # noqa: E402
from worker.metrics import WorkerMetrics  # noqa: E402

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eurlex57k" / "test.jsonl.gz"
)


def histogram_mean(histogram) -> float | None:
    samples = {sample.name: sample.value for sample in histogram.collect()[0].samples}
    name = histogram.collect()[0].name
    count = samples.get(f"{name}_count", 0)
    return samples[f"{name}_sum"] / count if count else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON-lines input.")
    parser.add_argument("--n", type=int, default=500, help="Documents to classify.")
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    settings = settings_from_args(args)
    metrics = WorkerMetrics()
    started = time.perf_counter()
    engine = InferenceEngine.from_settings(settings, metrics)
    load_seconds = time.perf_counter() - started
    import torch

    engine.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary = classify_file(
                engine, str(args.data), str(Path(tmp) / "out.jsonl"), limit=args.n, progress=False
            )
    finally:
        engine.stop()
    report = {
        "benchmark": "worker_engine_classify",
        "model": f"{engine.manifest.name} {engine.manifest.version}",
        "base_model": engine.manifest.base_model,
        "device": str(engine.runner.device),
        "device_name": (torch.cuda.get_device_name(engine.runner.device)
                        if engine.runner.device.type == "cuda" else platform.processor() or "cpu"),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(engine.runner.dtype).removeprefix("torch."),
        "max_length": engine.max_length,
        "long_documents": settings.long_documents,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_batch_size": settings.max_batch_size,
        "documents": summary["documents"],
        "failed": summary["failed"],
        "seconds": round(summary["seconds"], 3),
        "docs_per_second": round(summary["docs_per_second"], 2),
        "load_and_warmup_seconds": round(load_seconds, 2),
        "mean_batch_size": histogram_mean(metrics.batch_size),
        "mean_batch_tokens": histogram_mean(metrics.batch_tokens),
        "mean_padding_efficiency": histogram_mean(metrics.padding_efficiency),
        "mean_inference_seconds": histogram_mean(metrics.inference_seconds),
        "mean_queue_seconds": histogram_mean(metrics.queue_seconds),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
