"""What exactly-once costs: throughput and end-to-end latency against at-least-once, same run.

    python bench/delivery_cost.py [--documents 4000] [--rate 40] [--feed-s 20]

One broker (``deploy/local/kafka.sh``, free ports), one worker at a time on a 3-partition topic,
the tiny random checkpoint of the tests (the model costs almost nothing, so what is measured is
the delivery machinery: the worst case for the overhead of transactions). For each
configuration (at-least-once, and exactly-once with ``commit_interval_ms`` 100, 1000, 3000):

* **throughput**: ``--documents`` published before the worker starts; documents per second
  from the worker's partition assignment to the last output a reader sees (read_committed for
  exactly-once: the wait for the first commit included);
* **end-to-end latency**: then ``--rate`` documents/s for ``--feed-s`` seconds; per document,
  from the input's CreateTime to the moment the reader got its output (p50, p95, p99, max).

Writes bench/results/delivery_cost.json (or ``--output``). Wrap a run you report in the
exclusive CPU lock (``flock -x /tmp/eurovoc-cpu.lock``).
"""

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson  # noqa: E402
from _common import RESULTS  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from tests.integration.worker_harness import TopicReader, WorkerProcess, documents  # noqa: E402
from tests.kafka_fixtures import LocalBroker, create_topic, produce_messages  # noqa: E402
from tests.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

logger = logging.getLogger("delivery_cost")
CONFIGS = [("at-least-once", 1000), ("exactly-once", 100), ("exactly-once", 1000),
           ("exactly-once", 3000)]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1), "max_ms": round(max(values) * 1000, 1),
            "count": len(values)}


def measure(mode: str, interval_ms: int, args, bootstrap: str, model: Path) -> dict:
    topic = f"cost-{uuid.uuid4().hex[:8]}"
    for name in (topic, f"{topic}-out", f"{topic}-dlq"):
        create_topic(bootstrap, name, 3)
    produce_messages(bootstrap, topic, documents(args.documents, prefix="load"))
    reader = TopicReader(bootstrap, f"{topic}-out", read_committed=mode == "exactly-once")
    worker = WorkerProcess(
        bootstrap=bootstrap, topic=topic, group=f"{topic}-group", model=model, name="w",
        extra=["--delivery", mode, "--commit-interval-ms", str(interval_ms),
               "--transaction-timeout-ms", str(max(10_000, 4 * interval_ms))]).start()
    try:
        seen: dict[str, float] = {}

        def read(timeout_ms: int = 100) -> None:
            before = len(reader.records)
            reader.poll(timeout_ms)
            now = time.time()
            for record in reader.records[before:]:
                seen.setdefault(orjson.loads(record.value)["id"], now)

        deadline = time.monotonic() + 300
        while len(seen) < args.documents and time.monotonic() < deadline:
            read()
        assigned = datetime.fromisoformat(worker.wait_event("partitions_assigned", 60)["ts"])
        throughput = len(seen) / (max(seen.values()) - assigned.timestamp())
        sent_at: dict[str, float] = {}
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        feeding = threading.Event()

        def feed() -> None:
            started = time.monotonic()
            for index in range(int(args.rate * args.feed_s)):
                doc_id = f"live-{index}"
                sent_at[doc_id] = time.time()
                producer.send(topic, key=doc_id.encode(), timestamp_ms=int(sent_at[doc_id] * 1000),
                              value=orjson.dumps({"id": doc_id, "text": "council regulation "
                                                  "on fish and milk trade " * 4}))
                time.sleep(max(0.0, started + (index + 1) / args.rate - time.monotonic()))
            producer.flush(30)
            feeding.set()

        thread = threading.Thread(target=feed)
        thread.start()
        while not (feeding.is_set() and all(doc in seen for doc in sent_at)):
            read()
            if time.monotonic() > deadline:
                break
        thread.join()
        producer.close(5)
        latencies = [seen[doc] - sent for doc, sent in sent_at.items() if doc in seen]
        _, metrics = worker.get("/metrics")
        return {"delivery": mode, "commit_interval_ms": interval_ms,
                "throughput_docs_per_s": round(throughput, 1),
                "end_to_end_latency": percentiles(latencies),
                "outputs_missing": len(sent_at) - len(latencies),
                "transactions": sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                                    if line.startswith("eurovoc_transactions_total"))}
    finally:
        worker.stop(60)
        reader.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--feed-s", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "delivery_cost.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    results = []
    with tempfile.TemporaryDirectory(prefix="cost-") as tmp:
        model = Path(tmp) / "model"
        make_tiny_checkpoint(model)
        broker = LocalBroker(Path(tmp) / "kafka")
        bootstrap = broker.start()
        try:
            for mode, interval_ms in CONFIGS:
                results.append(measure(mode, interval_ms, args, bootstrap, model))
                logger.info("%s", results[-1])
        finally:
            broker.stop()
    baseline = results[0]["throughput_docs_per_s"]
    for result in results:
        result["throughput_vs_at_least_once"] = round(result["throughput_docs_per_s"] / baseline, 3)
    report = {"benchmark": "delivery_cost", "results": results,
              "documents": args.documents, "rate_docs_per_s": args.rate, "feed_s": args.feed_s,
              "model": "tiny random BERT (tests/tiny_checkpoint.py)",
              "command": "python bench/delivery_cost.py " + " ".join(argv or sys.argv[1:]),
              "finished": datetime.now(UTC).isoformat()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
