"""Failover: how long the group stops when one of three workers is killed (SIGKILL).

    python bench/failover.py [--session-timeout-ms 45000] [--rate 30] [--worker-command CMD]

Three ``eurovoc-worker run`` processes (a tiny random checkpoint: the model is not what is
measured) share a 6-partition topic that a producer here fills at ``--rate`` documents/s the
whole time. Once each holds partitions and ``--warmup-s`` passed, one worker is SIGKILLed and,
as an orchestrator would, a replacement is started at once (``--no-replacement``: not); the run
goes on for the session timeout + ``--after-s``. From the output topic (each label message
names its source partition, its CreateTime is when the worker sent it) and the workers'
partition events:

* ``survivor_gap_seconds``: per surviving worker, the longest time without an output of the
  partitions it held when the other was killed, from 5 s before the kill to the end (goal
  <= 5 s: a cooperative rebalance must not stop the partitions that do not move);
* ``dead_partitions_resumed_after_seconds``: from the kill to the first output of each of the
  dead worker's partitions (goal <= session_timeout_ms + 10 s).

``--worker-command`` runs another checkout's worker (e.g. the code before a change) with the
same flags. Without ``--bootstrap`` a private broker is started (deploy/local/kafka.sh) and
stopped at the end. Writes bench/results/failover.json (or ``--output``).
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson  # noqa: E402
from _common import REPO, RESULTS  # noqa: E402

from tests.integration.worker_harness import feed, log_events, longest_gap, owned_at  # noqa: E402
from tests.kafka_fixtures import LocalBroker, consume_all, create_topic, free_ports  # noqa: E402
from tests.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

logger = logging.getLogger("failover")
PARTITIONS = 6


def start_worker(command: list[str], name: str, bootstrap: str, topic: str, model: Path,
                 session_timeout_ms: int, log_dir: Path) -> tuple[subprocess.Popen, Path]:
    [port] = free_ports(1)
    log_path = log_dir / f"{name}.log"
    args = [*command, "--bootstrap-servers", bootstrap, "--input-topic", topic,
            "--output-topic", f"{topic}-out", "--dlq-topic", f"{topic}-dlq",
            "--group-id", f"{topic}-group", "--model", str(model), "--worker-id", name,
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
            "--session-timeout-ms", str(session_timeout_ms), "--torch-threads", "1",
            "--no-warmup", "--max-wait-ms", "5"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT), log_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-timeout-ms", type=int, default=45_000)
    parser.add_argument("--rate", type=float, default=30.0, help="Documents produced per second.")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--replacement", action=argparse.BooleanOptionalAction, default=True,
                        help="Start a fourth worker right after the kill.")
    parser.add_argument("--after-s", type=float, default=15.0)
    parser.add_argument("--worker-command", default=None,
                        help="Command that runs 'eurovoc-worker run' (default: this checkout's).")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--output", type=Path, default=RESULTS / "failover.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    script = Path(sys.executable).with_name("eurovoc-worker")
    command = (args.worker_command.split() if args.worker_command
               else [str(script), "run"])
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if not bootstrap:
            broker = LocalBroker(workdir / "kafka")
            bootstrap = broker.start()
        try:
            result = run(args, command, bootstrap, workdir)
        finally:
            if broker is not None:
                broker.stop()
    result |= {"command": "python bench/failover.py " + " ".join(argv or sys.argv[1:]),
               "worker_command": command, "finished": datetime.now(UTC).isoformat()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: result[key] for key in (
        "survivor_gap_seconds", "dead_partitions_resumed_after_seconds", "exit_codes")}))
    return 0


def run(args, command: list[str], bootstrap: str, workdir: Path) -> dict:
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    for name in (topic, f"{topic}-out", f"{topic}-dlq"):
        create_topic(bootstrap, name, PARTITIONS)
    model = workdir / "model"
    make_tiny_checkpoint(model)
    stop = threading.Event()
    sent: list[int] = []
    producer = threading.Thread(
        target=lambda: sent.append(feed(bootstrap, topic, PARTITIONS, args.rate, stop)))
    producer.start()
    workers = {name: start_worker(command, name, bootstrap, topic, model,
                                  args.session_timeout_ms, workdir)
               for name in ("w1", "w2", "w3")}
    deadline = time.monotonic() + 180
    while not all(owned_at(log_events(log.read_text(errors="replace").splitlines()), time.time())
                  for _, log in workers.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("the three workers did not all get partitions within 180 s")
        time.sleep(0.5)
    time.sleep(args.warmup_s)
    killed_at = time.time()
    workers["w3"][0].send_signal(signal.SIGKILL)
    if args.replacement:
        workers["w4"] = start_worker(command, "w4", bootstrap, topic, model,
                                     args.session_timeout_ms, workdir)
    logger.info("killed w3; observing for %.0fs", args.session_timeout_ms / 1000 + args.after_s)
    time.sleep(args.session_timeout_ms / 1000 + args.after_s)
    end = time.time()
    stop.set()
    producer.join(60)
    exit_codes = {}
    for name, (process, _) in workers.items():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            exit_codes[name] = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_codes[name] = process.wait()
    records = consume_all(bootstrap, f"{topic}-out", sent[0], timeout_s=120)
    by_partition: dict[int, list[float]] = {}
    for record in records:
        partition = orjson.loads(record.value)["source"]["partition"]
        by_partition.setdefault(partition, []).append(record.timestamp / 1000)
    logs = {name: log_events(log.read_text(errors="replace").splitlines())
            for name, (_, log) in workers.items()}
    owners = {name: owned_at(logs[name], killed_at) for name in workers}
    gaps = {name: round(longest_gap([t for p in owners[name] for t in by_partition.get(p, [])],
                                    killed_at - 5, end), 2)
            for name in ("w1", "w2")}
    resumed = {p: round(min((t for t in by_partition.get(p, []) if t > killed_at),
                            default=float("nan")) - killed_at, 2) for p in sorted(owners["w3"])}
    return {
        "benchmark": "failover",
        "replacement_started": args.replacement,
        "session_timeout_ms": args.session_timeout_ms,
        "rate_docs_per_second": args.rate,
        "documents_sent": sent[0],
        "distinct_outputs": len({orjson.loads(r.value)["id"] for r in records}),
        "partitions_at_kill": {name: sorted(owned) for name, owned in owners.items()},
        "survivor_gap_seconds": gaps,
        "dead_partitions_resumed_after_seconds": resumed,
        "exit_codes": exit_codes,
        "commit_failures_logged": {name: sum(e.get("event") == "commit_failed" for e in entries)
                                   for name, entries in logs.items()},
        "rebalances_logged": {name: sum(str(e.get("event", "")).startswith("partitions_")
                                        for e in entries) for name, entries in logs.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
