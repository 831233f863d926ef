"""End-to-end latency through the real broker: open-loop rates against the engine-only maximum.

    python bench/e2e_latency.py [--model DIR] [--rates 25,50,75,100] [--phase-s 30]
                                [--full-speed-docs 2000] [--engine-docs 400] [--quick]
                                [--bootstrap HOST:PORT] [--partitions 3]

In one run, with the same checkpoint and the worker's default engine settings:

1. the engine-only maximum: ``classify_file`` (the engine on a file, no Kafka) over
   ``--engine-docs`` test documents, in this process, model load and warm-up excluded;
2. the real ``eurovoc-worker run`` as a subprocess (configured by flags) on fresh topics; a
   producer here sends test documents open-loop (each at its scheduled time, whatever the worker
   does) at 25, 50, 75 and 100% of that maximum for ``--phase-s`` seconds each, waiting for every
   output between phases; a consumer here reads the output topic. Latency of a document: from
   its input record's timestamp (set by the producer at its scheduled send time) to the moment
   the consumer receives its output (or dead letter);
3. full speed: ``--full-speed-docs`` documents sent as fast as the producer can; the worker's
   throughput (documents / time from the first send to the last output received) against the
   engine-only maximum of step 1 (goal >= 0.9).

The consumer group's lag (input end offsets minus committed offsets) is sampled twice a second
throughout and plotted. Without --bootstrap (nor $KAFKA_BOOTSTRAP) a private broker is started
on free ports and stopped at the end. Writes bench/results/e2e_latency[-quick].json and .png.
"""

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from _common import DEFAULT_DATA, DEFAULT_MODEL, REPO, RESULTS, save_figure  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from worker_engine import classify_benchmark  # noqa: E402
from worker_throughput import (  # noqa: E402
    LoadSampler,
    _wait_ready,
    _worker_command,
    document_records,
    fresh_topics,
    machine_info,
    terminate,
)

from tests.kafka_fixtures import LocalBroker, admin_client, free_ports  # noqa: E402
from worker.inference.engine_settings import EngineSettings  # noqa: E402

logger = logging.getLogger("bench.e2e_latency")

THROUGHPUT_GOAL, P99_GOAL_S, HALF_RATE = 0.9, 2.0, 50


class OutputClock(threading.Thread):
    """Reads the output and dead-letter topics; notes when each key's answer arrives."""

    def __init__(self, bootstrap: str, topics: tuple[str, str]) -> None:
        super().__init__(name="output-clock", daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=100, request_timeout_ms=30_000)
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(self.consumer.partitions_for_topic(topic))]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.received: dict[bytes, float] = {}  # key -> wall-clock ms of receipt
        self.lock = threading.Lock()
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                for records in self.consumer.poll(timeout_ms=200).values():
                    now_ms = time.time() * 1000
                    with self.lock:
                        for record in records:
                            self.received.setdefault(record.key, now_ms)
        finally:
            self.consumer.close()

    def count(self, keys) -> int:
        with self.lock:
            return sum(1 for key in keys if key in self.received)

    def wait_for(self, keys: list[bytes], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.count(keys) < len(keys):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


class LagSampler(threading.Thread):
    """The group's total lag on the input topic, every ``every_s`` seconds."""

    def __init__(self, bootstrap: str, topic: str, group: str, every_s: float = 0.5) -> None:
        super().__init__(name="lag-sampler", daemon=True)
        self.bootstrap, self.topic, self.group, self.every_s = bootstrap, topic, group, every_s
        self.samples: list[tuple[float, int]] = []
        self.started_at = time.monotonic()
        self._stop_event = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        partitions = [TopicPartition(self.topic, p)
                      for p in sorted(consumer.partitions_for_topic(self.topic))]
        with admin_client(self.bootstrap) as admin:
            while not self._stop_event.wait(self.every_s):
                with contextlib.suppress(Exception):
                    ends = consumer.end_offsets(partitions)
                    committed = admin.list_group_offsets({self.group: None}).get(self.group, {})
                    lag = sum(end - max(0, committed[tp].offset if tp in committed else 0)
                              for tp, end in ends.items())
                    self.samples.append((round(time.monotonic() - self.started_at, 2), lag))
        consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def send_open_loop(producer: KafkaProducer, topic: str, records, rate: float) -> dict:
    """Send ``records`` at ``rate`` per second on a fixed schedule; returns key -> send ms."""
    sent: dict[bytes, float] = {}
    start = time.perf_counter()
    wall_start_ms = time.time() * 1000
    late = 0
    for index, (key, value) in enumerate(records):
        due = start + index / rate if rate else time.perf_counter()
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.05:
            late += 1
        stamp = wall_start_ms + (due - start) * 1000 if rate else time.time() * 1000
        producer.send(topic, key=key, value=value, timestamp_ms=int(stamp))
        sent[key] = float(int(stamp))
    producer.flush(60)
    seconds = time.perf_counter() - start
    return {"sent": sent, "send_seconds": seconds, "late_sends": late}


def latency_summary(sent: dict[bytes, float], received: dict[bytes, float]) -> dict:
    latencies = np.array([received[key] - stamp for key, stamp in sent.items()
                          if key in received]) / 1000
    if not len(latencies):
        return {"answered": 0}
    return {"answered": int(len(latencies)),
            **{f"p{q}_s": round(float(np.percentile(latencies, q)), 3) for q in (50, 90, 99)},
            "max_s": round(float(latencies.max()), 3), "mean_s": round(float(latencies.mean()), 3)}


def relabel(records, tag: str):
    """The same documents under new keys and ids (each phase sends distinct documents)."""
    out = []
    for key, value in records:
        new_key = key + f"~{tag}".encode()
        out.append((new_key, value.replace(b'"id":"' + key + b'"',
                                           b'"id":"' + new_key + b'"', 1)))
    return out


def run_worker_phases(args, bootstrap: str, engine_rate: float, workdir: Path) -> dict:
    phases: list[dict] = []
    with fresh_topics(bootstrap, "bench-e2e", args.partitions) as (topic, output, dlq):
        clock = OutputClock(bootstrap, (output, dlq))
        clock.start()
        group = f"{topic}-group"
        [port] = free_ports(1)
        log_path = workdir / "worker.log"
        command = [*_worker_command(), "--bootstrap-servers", bootstrap, "--input-topic", topic,
                   "--output-topic", output, "--dlq-topic", dlq, "--group-id", group,
                   "--model", str(args.model), "--metrics-host", "127.0.0.1",
                   "--metrics-port", str(port), "--log-level", "WARNING"]
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("EUROVOC_") or key == "EUROVOC_CACHE"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=log,
                                    stderr=subprocess.STDOUT)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1,
                                 compression_type="gzip")
        lag = LagSampler(bootstrap, topic, group)
        try:
            _wait_ready(port, proc, log_path, 300)
            lag.start()
            pool = document_records(args.data, args.max_docs)
            used = 0
            plan = [(pct, engine_rate * pct / 100) for pct in args.rates] + [("full", 0.0)]
            for pct, rate in plan:
                count = args.full_speed_docs if pct == "full" else max(1, int(rate * args.phase_s))
                records = relabel([pool[(used + i) % len(pool)] for i in range(count)],
                                  f"{pct}-{used}")
                used += count
                logger.info("phase %s%%: %d documents at %s docs/s", pct, count,
                            f"{rate:.1f}" if rate else "full speed")
                began = time.monotonic() - lag.started_at
                sending = send_open_loop(producer, topic, records, rate)
                keys = list(sending["sent"])
                finished = clock.wait_for(keys, args.drain_timeout_s)
                with clock.lock:
                    received = {key: clock.received[key] for key in keys if key in clock.received}
                first_sent = min(sending["sent"].values())
                last_received = max(received.values(), default=first_sent)
                phase = {"load_pct": pct, "target_rate": round(rate, 2), "documents": count,
                         "send_seconds": round(sending["send_seconds"], 2),
                         "late_sends": sending["late_sends"], "all_answered": finished,
                         "t_start_s": round(began, 2),
                         "t_end_s": round(time.monotonic() - lag.started_at, 2),
                         "throughput_docs_per_s": round(
                             len(received) / ((last_received - first_sent) / 1000), 2),
                         "latency": latency_summary(sending["sent"], received)}
                phases.append(phase)
                logger.info("  p50 %.3fs p99 %.3fs, %.1f docs/s",
                            phase["latency"].get("p50_s", float("nan")),
                            phase["latency"].get("p99_s", float("nan")),
                            phase["throughput_docs_per_s"])
                time.sleep(args.gap_s)
        finally:
            lag.stop()
            producer.close(10)
            exit_code = terminate(proc)
            clock.stop()
    return {"phases": phases, "lag_samples": lag.samples, "worker_exit_code": exit_code}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [p for p in result["phases"] if p["load_pct"] != "full"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    x = [p["target_rate"] for p in phases]
    for q, style in (("p50", "o-"), ("p99", "s-")):
        left.plot(x, [p["latency"].get(f"{q}_s") for p in phases], style, label=q)
    for p in phases:
        left.annotate(f"{p['load_pct']}%", (p["target_rate"], p["latency"].get("p99_s", 0)),
                      textcoords="offset points", xytext=(0, 6), fontsize=8, ha="center")
    left.axhline(P99_GOAL_S, color="#c0392b", linestyle="--", linewidth=1,
                 label=f"goal: p99 <= {P99_GOAL_S:.0f} s at {HALF_RATE}%")
    left.set_xlabel("offered rate (documents / s)")
    left.set_ylabel("end-to-end latency (s)")
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.set_title(f"engine-only max {result['engine_only']['docs_per_second']:.1f} docs/s; "
                   f"worker at full speed {result['worker_full_speed_docs_per_s']:.1f} "
                   f"(x{result['worker_vs_engine_only']:.2f})", fontsize=10)
    times, lags = zip(*result["lag_samples"], strict=True) if result["lag_samples"] else ((), ())
    right.plot(times, lags, color="#2e86c1")
    for p in result["phases"]:
        right.axvspan(p["t_start_s"], p["t_end_s"], alpha=0.08, color="#555")
        right.text(p["t_start_s"], max(lags or [1]) * 0.95, f"{p['load_pct']}"
                   + ("%" if p["load_pct"] != "full" else ""), fontsize=8)
    right.set_xlabel("time (s)")
    right.set_ylabel("consumer lag (records)")
    right.set_title("consumer group lag on the input topic", fontsize=10)
    save_figure(fig, f"End-to-end latency through Kafka, {result['model']}, "
                f"{result['machine']['cpu_model']} ({result['machine']['cpus_usable']} cores)",
                path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rates", default="25,50,75,100",
                        help="Open-loop rates in %% of the engine-only maximum.")
    parser.add_argument("--phase-s", type=float, default=30.0, help="Seconds of each rate.")
    parser.add_argument("--full-speed-docs", type=int, default=2000)
    parser.add_argument("--engine-docs", type=int, default=400)
    parser.add_argument("--max-docs", type=int, default=5000,
                        help="Distinct documents to cycle through.")
    parser.add_argument("--gap-s", type=float, default=2.0, help="Idle time between phases.")
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="Short phases (10 s), 600 full-speed and 200 engine documents.")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.phase_s, args.full_speed_docs, args.engine_docs = 10.0, 600, 200
    args.rates = [int(value) for value in args.rates.split(",")]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    started = datetime.now(UTC)
    sampler = LoadSampler()
    sampler.start()
    settings = EngineSettings(model=args.model)
    logger.info("engine-only maximum on %d documents", args.engine_docs)
    engine_only = classify_benchmark(settings, args.data, args.engine_docs)
    engine_rate = engine_only["docs_per_second"]
    logger.info("  %.1f docs/s (%s, %d threads)", engine_rate, engine_only["dtype"],
                engine_only["torch_threads"])
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-e2e-")))
        bootstrap = args.bootstrap
        if not bootstrap:
            broker = LocalBroker(workdir / "kafka")
            bootstrap = broker.start()
            stack.callback(broker.stop)
        run = run_worker_phases(args, bootstrap, engine_rate, workdir)
    full = next(p for p in run["phases"] if p["load_pct"] == "full")
    half = next((p for p in run["phases"] if p["load_pct"] == HALF_RATE), None)
    result = {
        "benchmark": "e2e_latency",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/e2e_latency.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:]),
        "machine": machine_info(),
        "load_average": sampler.stop(),
        "model": engine_only["model"],
        "engine_only": {key: engine_only[key] for key in (
            "docs_per_second", "documents", "dtype", "torch_threads", "max_length",
            "load_and_warmup_seconds")},
        "worker_full_speed_docs_per_s": full["throughput_docs_per_s"],
        "worker_vs_engine_only": round(full["throughput_docs_per_s"] / engine_rate, 3),
        "throughput_goal": THROUGHPUT_GOAL,
        "p99_at_half_rate_s": half and half["latency"].get("p99_s"),
        "p99_goal_s": P99_GOAL_S,
        **run,
    }
    output = args.output or RESULTS / ("e2e_latency-quick.json" if args.quick
                                       else "e2e_latency.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, output.with_suffix(".png"))
    print(json.dumps({key: result[key] for key in (
        "engine_only", "worker_full_speed_docs_per_s", "worker_vs_engine_only",
        "p99_at_half_rate_s")} | {"phases": [{k: p[k] for k in ("load_pct", "target_rate",
                                                                  "latency")}
                                             for p in result["phases"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
