"""Memory with large documents: the worker's peak RSS above its post-warm-up baseline, with and
without the byte budget (``max_in_flight_bytes``).

    flock -x /tmp/eurovoc-cpu.lock python bench/memory_budget.py [--documents 256]
        [--document-bytes 1000000] [--budgets-mib none,64] [--batch-delay-s 2]
        [--compression none]

For each budget (``none``: 1 TiB, i.e. only ``max_in_flight`` bounds the worker): fresh topics
(3 input partitions) on a private local broker (``deploy/local/kafka.sh``), one worker (a tiny
random checkpoint, every model batch slowed by ``--batch-delay-s`` through
``tests.integration.slow_worker`` so that fetched documents pile up as behind a real model),
``max_in_flight`` 256. Once it holds its partitions and idled, its RSS is sampled for 2 s: the
baseline (median). Then ``--documents`` documents of ``--document-bytes`` each (random words;
``--compression``: none by default, because kafka-python's gzip producer is slower than the
worker, so nothing would pile up) are published as fast as the producer can, and the worker's RSS
(``VmRSS`` of ``/proc/PID/status``, every 20 ms) and its ``eurovoc_in_flight_documents`` gauge are
sampled until every record is committed.

Writes bench/results/memory_budget.json (``--output``).
"""

import argparse
import json
import logging
import os
import platform
import random
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

from tests.integration.worker_harness import WorkerProcess, metric_values  # noqa: E402
from tests.kafka_fixtures import (  # noqa: E402
    LocalBroker,
    committed_offsets,
    create_topic,
    produce_messages,
)
from tests.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

logger = logging.getLogger("bench.memory_budget")
MIB = 1024 * 1024
NO_BUDGET = 1 << 40
PARTITIONS = 3
WORDS = ["council", "regulation", "fisheries", "milk", "quota", "member", "state", "customs",
         "tariff", "agriculture", "directive", "market", "aid", "import", "export", "wine"]


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def large_document(doc_id: str, size: int, rng: random.Random) -> bytes:
    """A JSON document of about ``size`` bytes of random words."""
    words: list[str] = []
    length = 0
    while length < size - 64:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return orjson.dumps({"id": doc_id, "text": " ".join(words)})


class RssSampler:
    """Samples a process's RSS on a thread; ``mark()`` starts a new window."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self._pid = pid
        self._interval_s = interval_s
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._samples.append(rss_bytes(self._pid))
            except (OSError, ValueError):  # the process ended
                return

    def mark(self) -> list[int]:
        """The samples since the last mark."""
        samples, self._samples = self._samples, []
        return samples

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def run_budget(args, broker: LocalBroker, model: Path, budget: int, documents) -> dict:
    topic = f"memory-{uuid.uuid4().hex}"
    for name, partitions in ((topic, PARTITIONS), (f"{topic}-out", 1), (f"{topic}-dlq", 1)):
        create_topic(broker.bootstrap, name, partitions)
    group = f"memory-{uuid.uuid4().hex}"
    worker = WorkerProcess(
        bootstrap=broker.bootstrap, topic=topic, group=group, model=model,
        module="tests.integration.slow_worker",
        env={"EUROVOC_TEST_BATCH_DELAY_S": str(args.batch_delay_s)},
        extra=["--max-in-flight", "256", "--max-in-flight-bytes", str(budget),
               "--max-batch-size", str(args.max_batch_size)],
    ).start()
    sampler = None
    try:
        worker.wait_event("partitions_assigned", 120)
        sampler = RssSampler(worker.proc.pid).start()
        time.sleep(3)  # idle after the assignment
        sampler.mark()
        time.sleep(2)
        baseline = statistics.median(sampler.mark())
        started = time.monotonic()
        produced: list[float] = []

        def produce() -> None:
            produce_messages(broker.bootstrap, topic, documents, flush_timeout_s=args.timeout_s,
                             compression_type=None if args.compression == "none"
                             else args.compression, max_request_size=4 * MIB, linger_ms=20)
            produced.append(time.monotonic() - started)

        producing = threading.Thread(target=produce, daemon=True)
        producing.start()
        in_flight_peak, done = 0.0, False
        deadline = started + args.timeout_s
        while time.monotonic() < deadline and worker.proc.poll() is None:
            status, text = worker.get("/metrics")
            if status == 200:
                in_flight_peak = max(in_flight_peak, *metric_values(
                    text, "eurovoc_in_flight_documents").values(), 0.0)
            committed = committed_offsets(broker.bootstrap, group, topic)
            if sum(committed.values()) >= len(documents):
                done = True
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        peak = max(sampler.mark() or [baseline])
        producing.join(30)
    finally:
        if sampler is not None:
            sampler.stop()
        exit_code = worker.stop(60) if worker.proc.poll() is None else worker.proc.returncode
    result = {
        "max_in_flight_bytes": None if budget == NO_BUDGET else budget,
        "all_committed": done,
        "seconds": round(elapsed, 1),
        "produced_in_s": round(produced[0], 1) if produced else None,
        "baseline_rss_mib": round(baseline / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "peak_above_baseline_mib": round((peak - baseline) / MIB, 1),
        "in_flight_documents_peak": int(in_flight_peak),
        "worker_exit_code": exit_code,
    }
    logger.info("budget %s: %s", result["max_in_flight_bytes"], result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=256)
    parser.add_argument("--document-bytes", type=int, default=1_000_000)
    parser.add_argument("--budgets-mib", default="none,64",
                        help="comma-separated MiB budgets; none: no byte budget")
    parser.add_argument("--batch-delay-s", type=float, default=2.0)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--compression", default="none",
                        choices=["none", "gzip", "snappy", "lz4", "zstd"])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--output", type=Path, default=RESULTS / "memory_budget.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    rng = random.Random(args.seed)
    documents = [(f"big-{i}".encode(), large_document(f"big-{i}", args.document_bytes, rng))
                 for i in range(args.documents)]
    budgets = [NO_BUDGET if part.strip() == "none" else int(part) * MIB
               for part in args.budgets_mib.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="memory-budget-") as tmp:
        workdir = Path(tmp)
        model = workdir / "model"
        make_tiny_checkpoint(model)
        broker = LocalBroker(workdir / "kafka")
        broker.start()
        try:
            for budget in budgets:
                runs.append(run_budget(args, broker, model, budget, documents))
        finally:
            broker.stop()
    report = {
        "runs": runs,
        "config": {
            "command": "python bench/memory_budget.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "documents": args.documents, "document_bytes": args.document_bytes,
            "document_bytes_actual": len(documents[0][1]),
            "partitions": PARTITIONS, "max_in_flight": 256,
            "batch_delay_s": args.batch_delay_s, "max_batch_size": args.max_batch_size,
            "fetch": "defaults: fetch_max_bytes 16 MiB, max_partition_fetch_bytes 1 MiB, "
                     "max_poll_records 500",
            "producer_compression": args.compression,
            "model": "tiny random BERT (tests/tiny_checkpoint.py)",
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} CPUs",
            "finished": datetime.now(UTC).isoformat(),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
