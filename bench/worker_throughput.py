"""Worker throughput: the Kafka worker against ``classify`` alone, and the Kafka path on its own.

    python bench/worker_throughput.py [--model DIR] [--n 400] [--rounds 3] [--noop-docs 20000]
                                      [--bootstrap HOST:PORT] [--torch-threads 2]

In one run, on the same N documents (the first N of the shared EURLEX57K test split) and the same
checkpoint (default: $EUROVOC_CACHE/models/cpu-quick), with the same engine settings:

1. classify alone: ``classify_file`` (what ``eurovoc-worker classify`` runs: read, validate,
   tokenize, batch, score, write in order) from the file, in this process, no Kafka;
2. the worker via Kafka: the N documents are produced to a fresh topic first, then the real
   ``eurovoc-worker run`` starts as a subprocess; a consumer here reads its output topic;
3. the Kafka path with a no-op engine: the real ``StreamProcessor`` and chain of steps (poll,
   decode, classify step, produce, acks, watermarks, commits) with an engine that answers at
   once, on ``--noop-docs`` documents (the test split again and again under new ids), in this
   process.

1 and 2 alternate ``--rounds`` times; docs/s are medians over the rounds and the ratio is the
median of the rounds' worker / classify ratios (goal >= 0.9). Model load and warm-up are
outside every timed part: classify is timed from its first read to its last written line; the
worker from the moment its ``/readyz`` answers 200 (model loaded and warmed up, group joined)
to the moment the last output (or dead letter) has been read back from the broker. CPU use of
the machine, of this process, of the worker and of the broker is recorded for each timed part,
and the load average throughout, since the machine is shared (``ratio_even_contention`` leaves
out rounds whose two parts met different loads from other processes).

The Kafka path with the no-op engine runs in this process: ``NoopEngine`` below is the engine
to give ``build_processor`` or ``run_worker(engine_factory=...)`` to measure Kafka alone.

Without --bootstrap (nor $KAFKA_BOOTSTRAP) a private broker is started with
deploy/local/kafka.sh on free ports in a temporary data dir, and stopped at the end.

Writes bench/results/worker_throughput.json and bench/results/worker_throughput.png.
"""

import argparse
import contextlib
import itertools
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib  # noqa: E402
from _common import DEFAULT_DATA, DEFAULT_MODEL, REPO, RESULTS, batch_histograms  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from worker_engine import classify_benchmark  # noqa: E402

from schemas.codec import encode_message  # noqa: E402
from schemas.document_files import read_documents  # noqa: E402
from schemas.labels import LabelsMessage, ModelInfo  # noqa: E402
from tests.kafka_fixtures import (  # noqa: E402
    LocalBroker,
    admin_client,
    create_topic,
    free_ports,
    produce_messages,
)
from worker.app import build_processor  # noqa: E402
from worker.inference.engine_settings import EngineSettings  # noqa: E402
from worker.inference.requests import EngineResult  # noqa: E402
from worker.kafka.clients import build_consumer, build_producer  # noqa: E402
from worker.pipeline.progress import Progress  # noqa: E402
from worker.runtime.http_endpoints import HealthState, WorkerNotReady, wait_until_ready  # noqa: E402
from worker.runtime.metrics import WorkerMetrics  # noqa: E402
from worker.settings.worker_settings import load_settings  # noqa: E402

logger = logging.getLogger("worker_throughput")

GOAL = 0.9
HZ = os.sysconf("SC_CLK_TCK")

# -- measuring the machine ---------------------------------------------------------------------


def _jiffies(stat_path: str) -> int | None:
    """utime + stime of a process or thread, in clock ticks."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def _machine_busy() -> int:
    with open("/proc/stat") as handle:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, handle.readline().split()[1:9]
        )
    return user + nice + system + irq + softirq + steal


def _threads(pid: int) -> dict[int, int]:
    out = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            ticks = _jiffies(f"{task}/stat")
            if ticks is not None:
                out[int(task.name)] = ticks
    return out


class CpuWindow:
    """CPU seconds of the machine, of some processes and of one process's threads, between
    ``__enter__`` and ``__exit__``."""

    def __init__(self, pids: dict[str, int | None], threads_of: int) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.threads_of = threads_of

    def _snapshot(self) -> tuple:
        return (time.perf_counter(), _machine_busy(),
                {name: _jiffies(f"/proc/{pid}/stat") for name, pid in self.pids.items()},
                _threads(self.threads_of))

    def __enter__(self) -> "CpuWindow":
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc_info) -> None:
        self.end = self._snapshot()

    def report(self) -> dict:
        (t0, busy0, procs0, threads0), (t1, busy1, procs1, threads1) = self.start, self.end
        wall = t1 - t0
        processes = {name: (procs1[name] - procs0[name]) / HZ for name in self.pids
                     if procs0.get(name) is not None and procs1.get(name) is not None}
        machine = (busy1 - busy0) / HZ
        threads = sorted(((tid, (ticks - threads0.get(tid, 0)) / HZ)
                          for tid, ticks in threads1.items()), key=lambda pair: -pair[1])
        return {
            "wall_seconds": round(wall, 3),
            "machine_busy_cores": round(machine / wall, 2),
            "process_cpu_seconds": {name: round(value, 2) for name, value in processes.items()},
            "other_processes_cores": round(max(0.0, machine - sum(processes.values())) / wall, 2),
            "main_thread_cpu_seconds": round(dict(threads).get(self.threads_of, 0.0), 2),
            "busiest_threads_cpu_seconds": [round(seconds, 2) for _, seconds in threads[:6]],
        }


class LoadSampler(threading.Thread):
    """The 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self, every_s: float = 5.0) -> None:
        super().__init__(name="load-sampler", daemon=True)
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._started_at = time.monotonic()

    def run(self) -> None:
        while True:
            self.samples.append((round(time.monotonic() - self._started_at, 1),
                                 os.getloadavg()[0]))
            if self._stop_event.wait(self.every_s):
                return

    def stop(self) -> dict:
        self._stop_event.set()
        self.join(5)
        loads = [load for _, load in self.samples]
        return {"min": min(loads), "max": max(loads),
                "mean": round(sum(loads) / len(loads), 2), "samples": self.samples}


def machine_info() -> dict:
    model_name = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    import torch

    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "cpu_model": model_name, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


# -- Kafka helpers -----------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, records) -> None:
    """Send ``(key, value)`` pairs as the demo's producer does (gzip, acks=all) and flush."""
    produce_messages(bootstrap, topic, records, flush_timeout_s=300, acks="all", linger_ms=20,
                     batch_size=256 * 1024, compression_type="gzip")


@contextlib.contextmanager
def fresh_topics(bootstrap: str, prefix: str, partitions: int):
    """``(input, output, dead letters)`` topics, created now and deleted afterwards."""
    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    names = (topic, f"{topic}-out", f"{topic}-dlq")
    for name in names:
        create_topic(bootstrap, name, partitions)
    try:
        yield names
    finally:
        with contextlib.suppress(Exception), admin_client(bootstrap) as admin:
            admin.delete_topics(list(names))


def document_records(data: Path, count: int) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of the first ``count`` documents of ``data``; when the file has fewer,
    it is read again with ``~1``, ``~2``... appended to the ids."""
    records: list[tuple[bytes, bytes]] = []
    for lap in itertools.count():
        before = len(records)
        for document in read_documents(data):
            if len(records) >= count:
                return records
            if lap:
                document = document.model_copy(update={"id": f"{document.id}~{lap}"})
            records.append((document.id.encode(), encode_message(document)))
        if len(records) == before:
            raise ValueError(f"{data}: no documents")
    return records


class OutputWatcher(threading.Thread):
    """Reads the output and dead-letter topics from the start; notes when ``expected``
    distinct documents have come out."""

    def __init__(self, bootstrap: str, output_topic: str, dlq_topic: str, expected: int) -> None:
        super().__init__(name="output-watcher", daemon=True)
        self.expected = expected
        self.dlq_topic = dlq_topic
        # A long fetch wait costs nothing in latency (the broker answers as soon as there is
        # a byte to return) and keeps this consumer from competing with the worker for CPU.
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=500, request_timeout_ms=30_000)
        partitions = [TopicPartition(topic, p) for topic in (output_topic, dlq_topic)
                      for p in sorted(self.consumer.partitions_for_topic(topic))]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.labelled: set[bytes] = set()
        self.dead: set[bytes] = set()
        self.created_ms: list[int] = []  # CreateTime of the output records (the worker's send)
        self.first_at: float | None = None
        self.done_at: float | None = None
        self.done = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                batches = self.consumer.poll(timeout_ms=1000)
                if not batches:
                    continue
                now = time.perf_counter()
                self.first_at = self.first_at or now
                for tp, records in batches.items():
                    for record in records:
                        if tp.topic == self.dlq_topic:
                            self.dead.add(record.key)
                        else:
                            self.labelled.add(record.key)
                            self.created_ms.append(record.timestamp)
                if len(self.labelled) + len(self.dead) >= self.expected:
                    self.done_at = now
                    self.done.set()
                    return
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


# -- 1. classify alone ---------------------------------------------------------------------------


def classify_alone(settings: EngineSettings, data: Path, n: int) -> dict:
    window = CpuWindow({"bench": os.getpid()}, threads_of=os.getpid())
    report = classify_benchmark(settings, data, n, window=lambda: window)
    report["cpu"] = window.report()
    return report


# -- 2. the worker via Kafka -------------------------------------------------------------------


def _worker_command() -> list[str]:
    script = Path(sys.executable).with_name("eurovoc-worker")
    return [str(script), "run"] if script.exists() else [sys.executable, "-m", "worker.commands.cli", "run"]


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _wait_ready(port: int, proc: subprocess.Popen, log_path: Path, timeout_s: float) -> float:
    try:
        wait_until_ready(port, proc, timeout_s, interval_s=0.01)
    except WorkerNotReady as exc:
        raise RuntimeError(f"{exc}:\n" + log_path.read_text()[-3000:]) from exc
    return time.perf_counter()


def terminate(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    """SIGTERM (the worker drains and commits), SIGKILL after ``timeout_s``; the exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _logged_engine_settings(log_path: Path) -> dict | None:
    """The engine part of the settings the worker logged at start-up."""
    for line in log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "start":
                return entry["settings"]["engine"]
    return None


def worker_via_kafka(bootstrap: str, records: list, settings: EngineSettings, *,
                     partitions: int, broker_pid: int | None, workdir: Path,
                     timeout_s: float) -> dict:
    with fresh_topics(bootstrap, "bench-worker", partitions) as (topic, output, dlq):
        produce(bootstrap, topic, records)
        watcher = OutputWatcher(bootstrap, output, dlq, len(records))
        watcher.start()
        [port] = free_ports(1)
        log_path = workdir / f"{topic}.log"
        command = [
            *_worker_command(),
            "--bootstrap-servers", bootstrap, "--input-topic", topic, "--output-topic", output,
            "--dlq-topic", dlq, "--group-id", f"{topic}-group", "--worker-id", "bench-worker",
            "--model", str(settings.model), "--torch-threads", str(settings.torch_threads),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--log-level", "INFO",
        ]
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("EUROVOC_") or key == "EUROVOC_CACHE"}
        env["TOKENIZERS_PARALLELISM"] = "false"
        launched = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=log,
                                    stderr=subprocess.STDOUT)
        exit_code = None
        try:
            ready = _wait_ready(port, proc, log_path, timeout_s)
            window = CpuWindow({"bench": os.getpid(), "worker": proc.pid, "broker": broker_pid},
                               threads_of=proc.pid)
            with window:
                finished = watcher.done.wait(timeout_s)
            if not finished:
                raise TimeoutError(
                    f"{len(watcher.labelled)} outputs and {len(watcher.dead)} dead letters of "
                    f"{len(records)} after {timeout_s:.0f}s:\n" + log_path.read_text()[-3000:])
            metrics_text = _get(port, "/metrics")[1].decode()
        finally:
            exit_code = terminate(proc)
            watcher.stop()
    seconds = watcher.done_at - ready
    created = sorted(watcher.created_ms)
    return {
        "documents": len(records),
        "labelled": len(watcher.labelled),
        "dead_lettered": len(watcher.dead),
        "seconds": round(seconds, 3),
        "docs_per_second": round(len(records) / seconds, 2),
        "startup_seconds": round(ready - launched, 2),
        "first_output_after_ready_seconds": round(watcher.first_at - ready, 3),
        "first_to_last_output_created_seconds": round((created[-1] - created[0]) / 1000, 3),
        "cpu": window.report(),
        "histograms": batch_histograms(text_string_to_metric_families(metrics_text)),
        "engine_settings": _logged_engine_settings(log_path),
        "exit_code": exit_code,
    }


# -- 3. the Kafka path with a no-op engine ------------------------------------------------------


class NoopEngine:
    """Returns a fixed label message per document at once (no model, no validation).

    Also usable as ``run_worker(settings, engine_factory=NoopEngine)``."""

    def __init__(self, *_settings_and_metrics) -> None:
        self._ready: list = []
        self._model = ModelInfo(name="noop", version="0", sha256="0" * 64)
        self._now = datetime.now(UTC)
        self.on_results = None

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
            self._ready.append(EngineResult(item, message, None))

    def poll_results(self, timeout: float = 0.0):
        out, self._ready = self._ready, []
        return [result for result in out if not result.item.cancelled]

    def pending(self) -> int:
        return len(self._ready)

    def healthy(self) -> bool:
        return True

    def stop(self, timeout: float = 10.0) -> None:
        pass


def noop_kafka_path(bootstrap: str, records: list, *, partitions: int,
                    broker_pid: int | None, timeout_s: float) -> dict:
    """The real processor and steps with a ``NoopEngine``, timed from the first record consumed
    to the last output acknowledged by the broker."""
    with fresh_topics(bootstrap, "bench-noop", partitions) as (topic, output, dlq):
        produce(bootstrap, topic, records)
        settings = load_settings(
            bootstrap_servers=bootstrap, input_topic=topic, output_topic=output, dlq_topic=dlq,
            group_id=f"{topic}-group", model=Path("noop"), metrics_port=-1, log_level="WARNING",
        )
        metrics = WorkerMetrics()
        producer = build_producer(settings)
        loop = build_processor(settings, engine=NoopEngine(), consumer=build_consumer(settings),
                               producer=producer, metrics=metrics,
                               health=HealthState(settings.operations.stall_timeout_s),
                               progress=Progress(metrics))
        expected = len(records)
        marks: dict[str, float] = {}
        window = CpuWindow({"bench": os.getpid(), "broker": broker_pid}, threads_of=os.getpid())

        def sample(name: str) -> float:
            return metrics.registry.get_sample_value(name) or 0.0

        def watch() -> None:
            deadline = time.monotonic() + timeout_s
            while True:
                if time.monotonic() > deadline:
                    marks["timeout"] = time.perf_counter()
                    loop.request_stop("benchmark timed out")
                    return
                if "first" not in marks and sample("eurovoc_documents_consumed_total"):
                    marks["first"] = time.perf_counter()
                    window.__enter__()
                finished = sample("eurovoc_documents_produced_total") + sum(
                    metric.value for family in metrics.registry.collect()
                    if family.name == "eurovoc_documents_dead_lettered"
                    for metric in family.samples if metric.name.endswith("_total"))
                if finished >= expected:
                    marks["done"] = time.perf_counter()
                    window.__exit__()
                    loop.request_stop("benchmark done")
                    return
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, name="noop-watcher", daemon=True)
        watcher.start()
        outcome = loop.run()
        producer.close(5)
        watcher.join(5)
        if "done" not in marks:
            raise TimeoutError(
                f"no-op Kafka path: {metrics.consumed._value.get():.0f} consumed and "
                f"{metrics.produced._value.get():.0f} produced of {expected} after "
                f"{timeout_s:.0f}s (exit {int(outcome.exit_code)}: {outcome.message})")
    seconds = marks["done"] - marks["first"]
    return {
        "documents": expected,
        "mean_value_bytes": round(sum(len(value) for _, value in records) / expected),
        "seconds": round(seconds, 3),
        "docs_per_second": round(expected / seconds, 1),
        "cpu": window.report(),
        "exit_code": int(outcome.exit_code),
        "settings": {"max_in_flight": settings.engine.max_in_flight,
                     "max_poll_records": settings.consumer.max_poll_records,
                     "compression": settings.producer.compression_type,
                     "linger_ms": settings.producer.linger_ms},
    }


# -- the run ---------------------------------------------------------------------------------


def attempt(what: str, run, failures: list[dict], tries: int = 2):
    """``run()``; a timeout or a worker that dies is recorded in ``failures`` and retried."""
    for number in range(1, tries + 1):
        try:
            return run()
        except (TimeoutError, RuntimeError) as exc:
            logger.error("%s, attempt %d of %d failed: %s", what, number, tries, exc)
            failures.append({"what": what, "attempt": number, "error": str(exc)[-2000:],
                             "at": datetime.now(UTC).isoformat(timespec="seconds")})
            if number == tries:
                raise
    raise AssertionError("unreachable")


UNEVEN_CORES = 0.25
"""A round whose two timed parts saw other processes' CPU use differ by more than this many
cores compared the two paths under different conditions (the machine is shared)."""


def round_summaries(rounds: dict[str, list[dict]]) -> list[dict]:
    out = []
    for alone, worker in zip(rounds["classify_alone"], rounds["worker_via_kafka"], strict=True):
        others = (alone["cpu"]["other_processes_cores"], worker["cpu"]["other_processes_cores"])
        out.append({
            "classify_docs_per_second": alone["docs_per_second"],
            "worker_docs_per_second": worker["docs_per_second"],
            "ratio": round(worker["docs_per_second"] / alone["docs_per_second"], 3),
            "other_processes_cores": others,
            "even_contention": abs(others[0] - others[1]) <= UNEVEN_CORES,
        })
    return out


def cpu_per_document(runs: list[dict]) -> dict[str, float]:
    """CPU milliseconds per document, by process, over all rounds' timed parts."""
    documents = sum(run["documents"] for run in runs)
    names = {name for run in runs for name in run["cpu"]["process_cpu_seconds"]}
    return {name: round(1000 * sum(run["cpu"]["process_cpu_seconds"].get(name, 0.0)
                                   for run in runs) / documents, 2) for name in sorted(names)}


def plot(result: dict, path: Path) -> None:
    classify = result["classify_alone"]["docs_per_second"]
    worker = result["worker_via_kafka"]["docs_per_second"]
    ratio = result["ratio"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    colors = ["#7f8c8d", "#2e86c1" if ratio >= GOAL else "#c0392b"]
    bars = left.bar(["classify alone\n(no Kafka)", "worker via Kafka\n(eurovoc-worker run)"],
                    [classify, worker], color=colors)
    for name, x in (("classify_alone", 0), ("worker_via_kafka", 1)):
        rounds = [run["docs_per_second"] for run in result["rounds"][name]]
        left.scatter([x] * len(rounds), rounds, color="black", s=12, zorder=3,
                     label="rounds" if x == 0 else None)
    left.bar_label(bars, fmt="%.1f docs/s")
    left.axhline(GOAL * classify, color="#555", linestyle="--", linewidth=1,
                 label=f"goal: {GOAL}x classify")
    left.set_ylabel("documents / s")
    highest = max(run["docs_per_second"] for runs in result["rounds"].values() for run in runs)
    left.set_ylim(0, highest * 1.45)
    per_round = ", ".join(f"{summary['ratio']:.2f}" for summary in result["round_summaries"])
    left.set_title(f"{result['model']['name']}, {result['documents']} docs, "
                   f"{result['torch_threads']} torch threads\nworker / classify = {ratio:.2f} "
                   f"(median of rounds: {per_round})", fontsize=10)
    left.legend(loc="upper right", fontsize=8)
    noop = result.get("noop_kafka_path")
    if noop:
        bar = right.bar(["Kafka path,\nno-op engine"], [noop["docs_per_second"]], color="#27ae60")
        right.bar_label(bar, fmt="%.0f docs/s")
        right.set_ylim(0, noop["docs_per_second"] * 1.3)
        right.set_title(f"{noop['documents']} docs of {noop['mean_value_bytes']} B\n"
                        f"{1000 / noop['docs_per_second']:.2f} ms/doc of Kafka work "
                        f"(model: {1000 / worker:.0f} ms/doc)", fontsize=10)
    else:
        right.set_axis_off()
    load = result["load_average"]
    fig.suptitle(f"Worker throughput, {result['machine']['cpu_count']} CPUs, load average "
                 f"{load['min']:.1f}-{load['max']:.1f} during the run", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="Checkpoint directory.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON-lines documents.")
    parser.add_argument("--n", type=int, default=400, help="Documents for classify and worker.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="classify / worker pairs, alternating (default %(default)s).")
    parser.add_argument("--noop-docs", type=int, default=20_000,
                        help="Documents through the no-op Kafka path; 0 skips it.")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"),
                        help="A running broker (default: $KAFKA_BOOTSTRAP, else a private one).")
    parser.add_argument("--timeout-s", type=float, default=180.0,
                        help="Longest wait for the worker to get ready, and then to finish "
                        "(a timed-out attempt is recorded and retried once).")
    parser.add_argument("--output", type=Path, default=RESULTS / "worker_throughput.json")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.n < 1:
        parser.error("--rounds and --n must be at least 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)

    load_before = os.getloadavg()
    started_at = datetime.now(UTC)
    sampler = LoadSampler()
    sampler.start()
    settings = EngineSettings(model=args.model, torch_threads=args.torch_threads)
    records = document_records(args.data, args.n)
    rounds: dict[str, list[dict]] = {"classify_alone": [], "worker_via_kafka": []}
    noop = None
    failures: list[dict] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-wt-")))
        broker_pid = None
        bootstrap = args.bootstrap
        if not bootstrap:
            broker = LocalBroker(workdir / "kafka")
            logger.info("starting a private broker in %s", broker.data_dir)
            bootstrap = broker.start()
            stack.callback(broker.stop)
            broker_pid = broker.pid()
        for index in range(args.rounds):
            logger.info("round %d/%d: classify alone", index + 1, args.rounds)
            rounds["classify_alone"].append(classify_alone(settings, args.data, args.n))
            logger.info("  %.1f docs/s", rounds["classify_alone"][-1]["docs_per_second"])
            logger.info("round %d/%d: worker via Kafka", index + 1, args.rounds)
            rounds["worker_via_kafka"].append(attempt(
                f"worker via Kafka, round {index + 1}",
                lambda: worker_via_kafka(bootstrap, records, settings,
                                         partitions=args.partitions, broker_pid=broker_pid,
                                         workdir=workdir, timeout_s=args.timeout_s),
                failures))
            logger.info("  %.1f docs/s", rounds["worker_via_kafka"][-1]["docs_per_second"])
        if args.noop_docs:
            logger.info("Kafka path with a no-op engine: %d documents", args.noop_docs)
            noop_records = document_records(args.data, args.noop_docs)
            noop = attempt("no-op Kafka path",
                           lambda: noop_kafka_path(bootstrap, noop_records,
                                                   partitions=args.partitions,
                                                   broker_pid=broker_pid, timeout_s=120.0),
                           failures)
            del noop_records
            logger.info("  %.0f docs/s", noop["docs_per_second"])
    load = sampler.stop()
    first = rounds["classify_alone"][0]
    summaries = round_summaries(rounds)
    classify_rate = statistics.median(run["docs_per_second"] for run in rounds["classify_alone"])
    worker_rate = statistics.median(run["docs_per_second"] for run in rounds["worker_via_kafka"])
    even = [summary["ratio"] for summary in summaries if summary["even_contention"]]
    worker_engine = rounds["worker_via_kafka"][0]["engine_settings"]
    result = {
        "benchmark": "worker_throughput",
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/worker_throughput.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()], **load},
        "model": {"name": first["model"].split()[0], "version": first["model"].split()[1],
                  "path": str(args.model), "base_model": first["base_model"],
                  "device": first["device"], "dtype": first["dtype"],
                  "max_length": first["max_length"]},
        "data": str(args.data),
        "documents": args.n,
        "torch_threads": args.torch_threads,
        "engine_settings": settings.model_dump(mode="json"),
        "worker_engine_settings_match": worker_engine == settings.model_dump(mode="json"),
        "kafka": {"bootstrap": bootstrap, "private_broker": broker_pid is not None,
                  "partitions": args.partitions},
        "timed_part": {
            "classify_alone": "classify_file over the first N documents of --data, from its "
                              "first read to its last written line; model load and warm-up "
                              "excluded (load_and_warmup_seconds)",
            "worker_via_kafka": "documents produced beforehand; from the worker's /readyz "
                                "answering 200 (model loaded and warmed up, group joined) to "
                                "the last output read back from the output topic; process "
                                "start, model load and warm-up excluded (startup_seconds)",
            "noop_kafka_path": "from the first record consumed to the last output "
                               "acknowledged by the broker",
        },
        "classify_alone": {"docs_per_second": classify_rate,
                           "cpu_ms_per_document": cpu_per_document(rounds["classify_alone"])},
        "worker_via_kafka": {"docs_per_second": worker_rate,
                             "cpu_ms_per_document": cpu_per_document(rounds["worker_via_kafka"])},
        "ratio": statistics.median(summary["ratio"] for summary in summaries),
        "ratio_even_contention": statistics.median(even) if even else None,
        "how_aggregated": "docs/s: median over the rounds; ratio: median of the rounds' "
                          "worker/classify ratios; ratio_even_contention: the same over the "
                          f"rounds whose two parts saw other processes' CPU use within "
                          f"{UNEVEN_CORES} cores of each other",
        "round_summaries": summaries,
        "goal": GOAL,
        "rounds": rounds,
        "noop_kafka_path": noop,
        "failed_attempts": failures,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.output.with_suffix(".png"))
    print(json.dumps({key: result[key] for key in (
        "classify_alone", "worker_via_kafka", "ratio", "ratio_even_contention")}
        | {"noop_kafka_path_docs_per_second": noop and noop["docs_per_second"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
