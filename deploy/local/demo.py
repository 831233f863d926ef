"""`make demo`: local Kafka, the default model, one worker, sample documents in, labels out.

Steps, each printed as it happens:
1. use $KAFKA_BOOTSTRAP, else start (or reuse) the local Kafka broker (deploy/local/kafka.sh);
2. use $EUROVOC_MODEL, else the cached cpu-quick model, else train it (about 10 minutes on 2 cores);
3. create this run's input, output and dead-letter topics (3 partitions each);
4. start `eurovoc-worker run` and wait for /readyz;
5. publish sample documents (the EUR-Lex test split when ../shared/data is present);
6. read every output back, print some, report throughput and the model's test metrics next to the
   TF-IDF baseline's; stop the worker with SIGTERM (graceful drain) and leave Kafka running.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas.labels import LabelsMessage
from schemas.manifest import read_manifest
from worker.commands.produce import ensure_topic, produce
from worker.commands.tail import format_labels, tail
from worker.runtime.http_endpoints import WorkerNotReady, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("EUROVOC_CACHE", Path.home() / ".cache" / "eurovoc-stream"))
SHARED_TEST = ROOT.parent / "shared" / "data" / "eurlex57k" / "test.jsonl.gz"
SAMPLES = Path(__file__).with_name("sample_documents.jsonl")
BASELINE = {"micro_f1": 0.780, "macro_f1": 0.605}  # TF-IDF + LR on the same test split (data README)

logger = logging.getLogger("demo")


def start_kafka() -> str:
    """The broker in $KAFKA_BOOTSTRAP when set, else the local one (started when not running)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"]
    result = subprocess.run(
        [str(ROOT / "deploy/local/kafka.sh"), "start"], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"Kafka did not start:\n{result.stderr}")
    for line in result.stdout.splitlines():
        if line.startswith("KAFKA_BOOTSTRAP="):
            return line.split("=", 1)[1]
    sys.exit(f"kafka.sh printed no KAFKA_BOOTSTRAP line:\n{result.stdout}")


def ensure_model() -> Path:
    if os.environ.get("EUROVOC_MODEL"):
        return Path(os.environ["EUROVOC_MODEL"])
    model = CACHE / "models" / "cpu-quick"
    if not (model / "eurovoc.json").is_file():
        logger.info("no cached model: training the cpu-quick profile into %s (~10 min)", model)
        subprocess.run(
            [str(BIN / "eurovoc-train"), "train", "--profile", "cpu-quick", "--output", str(model)],
            check=True,
        )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--documents", type=Path, default=SHARED_TEST if SHARED_TEST.is_file() else SAMPLES)
    parser.add_argument("--limit", type=int, default=300, help="Documents to publish.")
    parser.add_argument("--metrics-port", type=int, default=9401)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs", help="Where results go.")
    parser.add_argument("--show", type=int, default=10, help="Outputs to print.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)

    bootstrap = start_kafka()
    logger.info("Kafka at %s", bootstrap)
    model = ensure_model()
    manifest = read_manifest(model)
    logger.info("model %s %s (%s)", manifest.name, manifest.version, model)

    run_id = time.strftime("%Y%m%d-%H%M%S")
    topics = {name: f"demo-{run_id}-{name}" for name in ("documents", "labels", "dead-letters")}
    for topic in topics.values():
        ensure_topic(bootstrap, topic, partitions=3, timeout_s=15)
    run_dir = args.runs_dir / f"demo-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)

    worker_log = (run_dir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            str(BIN / "eurovoc-worker"), "run",
            "--bootstrap-servers", bootstrap,
            "--input-topic", topics["documents"],
            "--output-topic", topics["labels"],
            "--dlq-topic", topics["dead-letters"],
            "--group-id", f"demo-{run_id}",
            "--model", str(model),
            "--metrics-port", str(args.metrics_port),
        ],
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_until_ready(args.metrics_port, worker, timeout_s=120, interval_s=0.5)
        except WorkerNotReady as exc:
            sys.exit(str(exc))
        logger.info("worker ready (metrics on http://127.0.0.1:%d/metrics)", args.metrics_port)
        started = time.monotonic()
        sent = produce(args.documents, topics["documents"], bootstrap, limit=args.limit)
        outputs_path = run_dir / "labels.jsonl"
        with outputs_path.open("w") as outputs:
            received = tail(topics["labels"], bootstrap, max_messages=sent, idle_timeout_s=60,
                            raw_json=True, out=outputs)
        elapsed = time.monotonic() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        worker_log.close()

    lines = outputs_path.read_bytes().splitlines()
    print(f"\nFirst {min(args.show, len(lines))} of {received} results (all in {outputs_path}):")
    for line in lines[: args.show]:
        print("  " + format_labels(line))
    truncated = sum(LabelsMessage.model_validate_json(line).truncated for line in lines)
    print(f"\n{received}/{sent} documents labelled in {elapsed:.1f} s "
          f"= {received / elapsed:.1f} docs/s end to end (one worker, {os.cpu_count()} CPU cores); "
          f"{truncated} truncated to {manifest.max_length} tokens.")
    test = manifest.metrics.get("test", {})
    if test:
        print(f"Model {manifest.name} (a quick CPU model, not the GPU profile) on the test split: "
              f"micro-F1 {test.get('micro_f1', float('nan')):.3f}, "
              f"macro-F1 {test.get('macro_f1', float('nan')):.3f}; "
              f"TF-IDF baseline (data README): micro-F1 {BASELINE['micro_f1']:.3f}, "
              f"macro-F1 {BASELINE['macro_f1']:.3f}.")
    print(f"Worker exit code {worker.returncode}; log in {run_dir / 'worker.log'}. "
          "Kafka is still running: `make kafka-stop` stops it.")
    if received != sent or worker.returncode != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
