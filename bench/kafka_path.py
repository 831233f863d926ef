"""Throughput of the Kafka path: the real consumer loop (poll, decode, watermarks, produce, acks,
commits) against a local broker, with a trivial engine, and optionally with the real engine on a
tiny checkpoint compared with that engine alone.

    .venv/bin/python bench/kafka_path.py --bootstrap 127.0.0.1:19092 [--docs 20000] [--engine noop|tiny]

Writes bench/results/kafka_path[-tiny].json.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import orjson  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kafka import KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from schemas.labels import LabelsMessage, ModelInfo  # noqa: E402
from worker.config import load_settings  # noqa: E402
from worker.consumer_loop import ConsumerLoop  # noqa: E402
from worker.engine import WorkResult  # noqa: E402
from worker.kafka_clients import build_consumer, build_producer  # noqa: E402
from worker.metrics import WorkerMetrics  # noqa: E402
from worker.rebalance import QueueingRebalanceListener  # noqa: E402
from worker.sink import Sink  # noqa: E402


class NoopEngine:
    """Returns a fixed label message per document at once (no model, no validation)."""

    def __init__(self) -> None:
        self._ready: list = []
        self._model = ModelInfo(name="noop", version="0", sha256="0" * 64)
        self._now = datetime.now(UTC)

    def start(self) -> None:
        pass

    def submit(self, items) -> None:
        construct = LabelsMessage.model_construct
        for item in items:
            message = construct(
                schema_version=1, id=item.document.id, labels=[], scores={}, thresholds={},
                model=self._model, truncated=False, chunks=1, tokens=0, source=item.source,
                produced_at=self._now,
            )
            self._ready.append(WorkResult(item, message, None))

    def poll_results(self, timeout: float = 0.0):
        out, self._ready = self._ready, []
        return out

    def pending(self) -> int:
        return len(self._ready)

    def discard(self, predicate) -> int:
        before = len(self._ready)
        self._ready = [r for r in self._ready if not predicate(r.item)]
        return before - len(self._ready)

    def healthy(self) -> bool:
        return True

    def stop(self, timeout: float = 10.0) -> None:
        pass


def make_docs(count: int) -> list[tuple[bytes, bytes]]:
    words = "the council regulation on the common market in fish and milk products".split()
    docs = []
    for i in range(count):
        text = " ".join(words[(i + j) % len(words)] for j in range(150 + (i * 37) % 400))
        docs.append((f"doc-{i}".encode(), orjson.dumps({"id": f"doc-{i}", "text": text})))
    return docs


def produce(bootstrap: str, topic: str, docs) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024,
                             compression_type="gzip")
    for key, value in docs:
        producer.send(topic, key=key, value=value)
    producer.flush(120)
    producer.close()


def run_loop(settings, engine, expected: int) -> dict:
    metrics = WorkerMetrics()
    sink = Sink(build_producer(settings))
    loop = ConsumerLoop(settings, build_consumer(settings), sink, engine, metrics,
                        QueueingRebalanceListener())
    marks: dict[str, float] = {}

    def watch() -> None:
        while True:
            consumed = metrics.consumed._value.get()
            if consumed and "first" not in marks:
                marks["first"] = time.perf_counter()
            if metrics.produced._value.get() + sum(
                    child._value.get() for child in metrics.dead_lettered._metrics.values()
            ) >= expected:
                marks["done"] = time.perf_counter()
                loop.request_stop("benchmark done")
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cpu0 = time.process_time()
    outcome = loop.run()
    cpu = time.process_time() - cpu0
    sink.close(5)
    watcher.join(5)
    elapsed = marks["done"] - marks["first"]
    return {"docs": expected, "seconds": round(elapsed, 3),
            "docs_per_s": round(expected / elapsed, 1),
            "process_cpu_s": round(cpu, 2), "exit": int(outcome.exit_code)}


def engine_alone(settings, docs) -> dict:
    from schemas.document import InputDocument
    from worker.engine import InferenceEngine, work_item

    engine = InferenceEngine.from_settings(settings.engine_settings(), WorkerMetrics())
    engine.start()
    items = [work_item(InputDocument.model_validate(orjson.loads(value))) for _, value in docs]
    started = time.perf_counter()
    done = 0
    index = 0
    limit = settings.max_in_flight
    while done < len(items):
        room = limit - engine.pending()
        if room > 0 and index < len(items):
            engine.submit(items[index:index + room])
            index += room
        done += len(engine.poll_results(0.005))
    elapsed = time.perf_counter() - started
    engine.stop()
    return {"docs": len(items), "seconds": round(elapsed, 3),
            "docs_per_s": round(len(items) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--engine", choices=["noop", "tiny"], default="noop")
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    topic = f"bench-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(name, args.partitions, 1)
                         for name in (topic, f"{topic}-out", f"{topic}-dlq")])
    time.sleep(1)
    docs = make_docs(args.docs)
    produce(args.bootstrap, topic, docs)
    mean_bytes = sum(len(value) for _, value in docs) / len(docs)

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny"
        engine_factory = NoopEngine
        extra = {}
        if args.engine == "tiny":
            from tests.tiny_checkpoint import make_tiny_checkpoint

            make_tiny_checkpoint(model)
            extra = {"torch_threads": 1}
        settings = load_settings(
            bootstrap_servers=args.bootstrap, input_topic=topic, output_topic=f"{topic}-out",
            dlq_topic=f"{topic}-dlq", group_id=f"{topic}-group", model=model, metrics_port=-1,
            log_level="WARNING", **extra,
        )
        from worker.logging_setup import setup_logging

        setup_logging("WARNING")
        result = {
            "benchmark": "kafka_path",
            "engine": args.engine,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "partitions": args.partitions,
            "mean_value_bytes": round(mean_bytes),
            "settings": {"max_in_flight": settings.max_in_flight,
                         "max_poll_records": settings.max_poll_records,
                         "compression": settings.compression_type,
                         "linger_ms": settings.linger_ms},
        }
        if args.engine == "noop":
            result["kafka_path"] = run_loop(settings, NoopEngine(), len(docs))
        else:
            from worker.engine import InferenceEngine

            result["engine_alone"] = engine_alone(settings, docs)
            engine = InferenceEngine.from_settings(settings.engine_settings(), WorkerMetrics())
            engine.start()
            result["through_kafka"] = run_loop(settings, engine, len(docs))
            engine.stop()
            alone = result["engine_alone"]["docs_per_s"]
            through = result["through_kafka"]["docs_per_s"]
            result["kafka_overhead_percent"] = round(100 * (alone - through) / alone, 1)
        del engine_factory
    admin.delete_topics([topic, f"{topic}-out", f"{topic}-dlq"])
    admin.close()
    out = REPO / "bench" / "results" / (
        "kafka_path.json" if args.engine == "noop" else "kafka_path-tiny.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
