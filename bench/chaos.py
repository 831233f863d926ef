"""Fault injection: both delivery modes on the real broker, faults while documents flow, in numbers.

    python bench/chaos.py --json                 # the full run (20,000 documents, every fault)
    python bench/chaos.py --small --json         # ~2,000 documents, 2 SIGKILLs, a broker restart

For each mode (``--modes``, default both) on one local broker (``deploy/local/kafka.sh``, its
own free ports and data directory): a 6-partition input topic, ``--workers`` worker processes
(a tiny random checkpoint, so thousands of documents flow; a 6 s session timeout), a producer
that publishes the documents at a steady rate (an idempotent one: inputs are never repeated)
with a share of poison records, and faults at times drawn from ``--seed``:

* ``sigkill``: a random worker is killed; a replacement starts at once;
* ``sigterm``: a random worker is stopped gracefully; a replacement starts;
* ``scale``: the group goes to 1 worker, then 3, then 1, then back to ``--workers``;
* ``broker``: the broker is stopped for ``--broker-down-s`` and started again;
* ``zombie``: a worker is frozen (SIGSTOP) past the session timeout, then resumed (SIGCONT):
  its partitions moved meanwhile, so its late writes must be fenced or harmless;
* ``poison_burst``: a run of poison records in a row.

A supervisor restarts any worker that exits (as an orchestrator would). Then the output topic
(read_committed for exactly-once) and the dead-letter topic are read and compared with what was
published. ``--json`` prints the report as the last line of stdout; it is also written to
``--output`` (default ``bench/results/chaos.json``, or ``chaos_small.json`` with ``--small``)::

    {"at_least_once": {"in", "out_distinct", "lost", "duplicated", "dead_lettered",
                       "recovery_s", "survivor_gap_s", "faults", ...},
     "exactly_once": {...}, "config": {...}}

``lost``: good documents published without an output; ``duplicated``: output and dead-letter
records minus distinct ids (as a read_committed reader sees them in exactly-once);
``recovery_s``: per fault, from its start (the broker: from its restart) until every partition
had an output again;
``survivor_gap_s``: per fault, the longest time without output from the partitions of the
workers it did not hit (null where it hit every worker). Wrap a run you report in the exclusive
CPU lock (``flock -x /tmp/eurovoc-cpu.lock``).
"""

import argparse
import collections
import json
import logging
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson  # noqa: E402
from _common import RESULTS  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from schemas.dead_letter import DeadLetterHeaders  # noqa: E402
from tests.integration.worker_harness import (  # noqa: E402
    TopicReader,
    WorkerProcess,
    document,
    longest_gap,
    owned_at,
)
from tests.kafka_fixtures import LocalBroker, create_topic  # noqa: E402
from tests.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

logger = logging.getLogger("chaos")
PARTITIONS = 6
MODES = {"at-least-once": "at_least_once", "exactly-once": "exactly_once"}
POISON = [  # (value, the error.type its dead letter must carry)
    (b'{"id": "x", "text": ', "not_json"),
    (b'{"id": "x", "text": "\xff\xfe"}', "not_utf8"),
    (orjson.dumps({"id": "m"}), "schema_violation"),
    (orjson.dumps({"id": "e", "text": "  "}), "empty_message"),
]
FULL = dict(documents=20_000, rate=55.0, faults=["sigkill"] * 5 + [
    "sigterm", "scale", "broker", "zombie", "poison_burst"])
SMALL = dict(documents=2_000, rate=15.0, faults=["sigkill", "broker", "sigkill"])


@dataclass
class Fault:
    kind: str
    at: float  # epoch seconds
    end: float = 0.0
    target: str | None = None
    hit: list[str] = field(default_factory=list)  # workers it hit (all for the broker)
    note: str = ""


class Fleet:
    """The worker processes of one mode; a supervisor thread restarts any that exits."""

    def __init__(self, args, mode: str, bootstrap: str, topic: str, model: Path,
                 log_dir: Path) -> None:
        self.args, self.mode, self.bootstrap, self.topic = args, mode, bootstrap, topic
        self.model, self.log_dir = model, log_dir
        self.group = f"{topic}-group"
        self.live: dict[str, WorkerProcess] = {}
        self.all: dict[str, WorkerProcess] = {}
        self.exits: dict[str, int] = {}
        self.expected_exits: set[str] = set()
        self.frozen: set[str] = set()
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def start(self, count: int) -> None:
        for _ in range(count):
            self.spawn()
        self._supervisor.start()

    def spawn(self) -> str:
        with self._lock:
            self._count += 1
            name = f"w{self._count}"
            worker = WorkerProcess(
                bootstrap=self.bootstrap, topic=self.topic, group=self.group, model=self.model,
                name=name, extra=["--delivery", self.mode,
                                  "--commit-interval-ms", str(self.args.commit_interval_ms),
                                  "--stall-timeout-s", "90", "--max-batch-size", "32"])
            self.live[name] = self.all[name] = worker.start()
        return name

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                gone = [(name, w) for name, w in self.live.items() if w.proc.poll() is not None]
                for name, worker in gone:
                    self.exits[name] = worker.proc.returncode
                    del self.live[name]
            for name, worker in gone:
                if name not in self.expected_exits:
                    logger.warning("%s exited %s unasked: starting a replacement", name,
                                   worker.proc.returncode)
                    self.spawn()

    def ready(self) -> list[str]:
        """Live workers, not frozen, that hold partitions (a starting one is not a target)."""
        with self._lock:
            return sorted(name for name, worker in self.live.items() if name not in self.frozen
                          and owned_at(worker.events(), time.time()))

    def pick(self, rng: random.Random, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.5)
        return rng.choice(self.ready() or sorted(set(self.live) - self.frozen))

    def wait_ready(self, names: list[str], timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while not set(names) <= set(self.ready()) and time.monotonic() < deadline:
            time.sleep(0.5)

    def signal(self, name: str, signum: int, expected_exit: bool) -> None:
        if expected_exit:
            self.expected_exits.add(name)
        self.live[name].signal(signum)

    def wait_exit(self, name: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while name in self.live and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._supervisor.join(5)
        for name, worker in list(self.live.items()):
            if name in self.frozen:
                worker.signal(signal.SIGCONT)
            try:
                self.exits[name] = worker.stop(60)
            except AssertionError:
                self.exits[name] = -9
        for name, worker in self.all.items():
            (self.log_dir / f"{name}.log").write_text(worker.log_text())


class Feed:
    """Publishes good documents and poison at a steady rate, one partition after the other."""

    def __init__(self, bootstrap: str, topic: str, total: int, rate: float, share: float,
                 rng: random.Random) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                      acks="all", linger_ms=5, delivery_timeout_ms=300_000,
                                      request_timeout_ms=20_000)
        self.topic, self.total, self.rate, self.share, self.rng = topic, total, rate, share, rng
        self.good: set[str] = set()
        self.poison: collections.Counter = collections.Counter()  # by expected reason
        self.failed: list[BaseException] = []
        self.sent = 0
        self.bursts: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _send(self, key: str, value: bytes, on_ok) -> None:
        future = self.producer.send(self.topic, key=key.encode(), value=value,
                                    partition=self.sent % PARTITIONS)
        future.add_callback(lambda _: on_ok()).add_errback(self.failed.append)
        self.sent += 1

    def _poison(self, index: int) -> None:
        value, reason = POISON[index % len(POISON)]
        self._send(f"poison-{self.sent}", value, lambda: self.poison.update([reason]))

    def _run(self) -> None:
        started = time.monotonic()
        for index in range(self.total):
            doc_id = f"doc-{index}"
            self._send(doc_id, document(doc_id, 8 + self.rng.randrange(160)),
                       lambda doc_id=doc_id: self.good.add(doc_id))
            if self.rng.random() < self.share:
                self._poison(index)
            while self.bursts:
                for burst_index in range(self.bursts.pop()):
                    self._poison(burst_index)
            time.sleep(max(0.0, started + (index + 1) / self.rate - time.monotonic()))
        self.producer.flush(300)
        self.producer.close(10)


def schedule(kinds: list[str], rng: random.Random, spacing_s: float) -> list[tuple[float, str]]:
    """``[(pause_s, kind)]``: the faults in a seeded order, each a seeded pause after every
    partition flows again after the one before."""
    kinds = list(kinds)
    rng.shuffle(kinds)
    return [(round(rng.uniform(0.7, 1.3) * spacing_s, 1), kind) for kind in kinds]


class LiveReader:
    """Reads a topic as a downstream consumer does, on a thread, noting when each output arrived
    (read_committed for exactly-once: when it became visible)."""

    def __init__(self, bootstrap: str, topic: str, read_committed: bool) -> None:
        self.reader = TopicReader(bootstrap, topic, read_committed=read_committed)
        self.arrivals: list[tuple[int, float]] = []  # (source partition, epoch seconds)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = len(self.reader.records)
            self.reader.poll(100)
            now = time.time()
            for record in self.reader.records[before:]:
                self.arrivals.append((orjson.loads(record.value)["source"]["partition"], now))

    def wait_flowing(self, since: float, timeout_s: float) -> None:
        """Until every partition had an output after ``since`` (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if {p for p, t in list(self.arrivals) if t > since} >= set(range(PARTITIONS)):
                return
            time.sleep(0.5)

    def stop(self) -> list:
        self._stop.set()
        self.thread.join(10)
        self.reader.close()
        return self.reader.records


def inject(kind: str, fleet: Fleet, broker: LocalBroker, feed: Feed, rng: random.Random,
           args) -> Fault:
    fault = Fault(kind, time.time())
    session_s = 6.0
    if kind in ("sigkill", "sigterm"):
        fault.target = fleet.pick(rng)
        fault.hit = [fault.target]
        fleet.signal(fault.target, signal.SIGKILL if kind == "sigkill" else signal.SIGTERM, True)
        fleet.wait_exit(fault.target)
        fleet.spawn()
    elif kind == "zombie":
        fault.target = fleet.pick(rng)
        fault.hit = [fault.target]
        fleet.frozen.add(fault.target)
        fleet.live[fault.target].signal(signal.SIGSTOP)
        time.sleep(session_s + args.zombie_extra_s)
        fleet.live[fault.target].signal(signal.SIGCONT)
        fleet.frozen.discard(fault.target)
    elif kind == "broker":
        fault.hit = sorted(fleet.live)
        broker.stop()
        time.sleep(max(0.0, fault.at + args.broker_down_s - time.time()))
        broker.start()
    elif kind == "scale":
        fault.hit = []
        while len(fleet.live) > 1:  # 1
            name = fleet.pick(rng)
            fault.hit.append(name)
            fleet.signal(name, signal.SIGTERM, True)
            fleet.wait_exit(name)
        time.sleep(8)
        started = [fleet.spawn() for _ in range(2)]  # 3
        fleet.wait_ready(started)
        time.sleep(8)
        for name in started:  # 1 again
            fleet.signal(name, signal.SIGTERM, True)
            fleet.wait_exit(name)
        time.sleep(8)
        while len(fleet.live) < args.workers:
            fleet.spawn()
        fault.note = f"stopped {fault.hit}, started and stopped {started}"
    elif kind == "poison_burst":
        feed.bursts.append(args.burst)
    fault.end = time.time()
    logger.info("fault %s (%s) took %.1fs", kind, fault.target or "-", fault.end - fault.at)
    return fault


def run_mode(mode: str, args, broker: LocalBroker, model: Path, workdir: Path) -> dict:
    rng = random.Random(f"{args.seed}-{mode}")
    topic = f"chaos-{mode}-{uuid.uuid4().hex[:6]}"
    for name in (topic, f"{topic}-out", f"{topic}-dlq"):
        create_topic(broker.bootstrap, name, PARTITIONS)
    log_dir = (args.log_dir or workdir) / mode
    log_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(args, mode, broker.bootstrap, topic, model, log_dir)
    fleet.start(args.workers)
    fleet.wait_ready(list(fleet.live))
    read_committed = mode == "exactly-once"
    outputs = LiveReader(broker.bootstrap, f"{topic}-out", read_committed)
    outputs.thread.start()
    feed = Feed(broker.bootstrap, topic, args.documents, args.rate, args.poison_share, rng)
    started = time.time()
    feed.thread.start()
    faults = []
    time.sleep(args.first_fault_s)
    for pause_s, kind in schedule(args.faults, rng, args.spacing_s):
        if not feed.thread.is_alive():
            logger.warning("the feed ended before fault %s: raise --documents or lower --rate",
                           kind)
            break
        fleet.wait_ready(list(fleet.live))  # a fault hits a group at work, not one starting
        faults.append(inject(kind, fleet, broker, feed, rng, args))
        outputs.wait_flowing(faults[-1].end, timeout_s=180)  # one fault at a time
        time.sleep(pause_s)
    feed.thread.join()
    fed = time.time()
    letters = TopicReader(broker.bootstrap, f"{topic}-dlq", read_committed=read_committed)
    deadline = time.monotonic() + args.settle_s
    while time.monotonic() < deadline:
        letters.poll(500)
        if ({orjson.loads(r.value)["id"] for r in list(outputs.reader.records)} >= feed.good
                and len(letters.records) >= sum(feed.poison.values())):
            break
    time.sleep(2)  # late duplicates, if any
    fleet.stop()
    letters.poll(1000)
    records = outputs.stop()
    report = evaluate(feed, records, outputs.arrivals, letters.records, faults, fleet, started,
                      fed)
    letters.close()
    return report


def evaluate(feed: Feed, outputs: list, arrivals: list[tuple[int, float]], letters: list,
             faults: list[Fault], fleet: Fleet, started: float, fed: float) -> dict:
    ids = collections.Counter(orjson.loads(record.value)["id"] for record in outputs)
    letter_keys = collections.Counter(record.key for record in letters)
    reasons = collections.Counter(
        DeadLetterHeaders.from_kafka_headers(record.headers).error_type.value
        for record in letters)
    times: dict[int, list[float]] = collections.defaultdict(list)  # arrivals by source partition
    for partition, arrived in arrivals:
        times[partition].append(arrived)
    seen: set[str] = set()
    duplicate_times = []  # an id's outputs share one partition (keyed): log order is write order
    for record, (_, arrived) in zip(outputs, arrivals):
        doc_id = orjson.loads(record.value)["id"]
        if doc_id in seen:
            duplicate_times.append(arrived)
        seen.add(doc_id)
    end = max((t for ts in times.values() for t in ts), default=fed)
    recovery, gaps, described = [], [], []
    logs = {name: worker.events() for name, worker in fleet.all.items()}
    for index, fault in enumerate(faults):
        since = fault.end if fault.kind == "broker" else fault.at  # the broker: once it is back
        after = [min((t for t in times[p] if t > since), default=None)
                 for p in range(PARTITIONS)]
        recovered = None if None in after else round(max(after) - since, 2)
        survivors = [name for name in logs if name not in fault.hit
                     and owned_at(logs[name], fault.at)]
        window_end = max(fault.end, fault.at + (recovered or 0)) + 5
        gap = None
        if survivors and fault.kind != "broker":
            gap = round(max(longest_gap([t for p in owned_at(logs[name], fault.at)
                                         for t in times[p]], fault.at, min(window_end, end))
                            for name in survivors), 2)
        next_at = faults[index + 1].at if index + 1 < len(faults) else float("inf")
        recovery.append(recovered)
        gaps.append(gap)
        described.append({
            "type": fault.kind, "at_s": round(fault.at - started, 1),
            "took_s": round(fault.end - fault.at, 1), "target": fault.target,
            "hit": fault.hit, "note": fault.note or None, "recovery_s": recovered,
            "survivor_gap_s": gap,
            "duplicates_after": sum(fault.at <= t < next_at for t in duplicate_times),
        })
    return {
        "in": len(feed.good),
        "out_distinct": len(set(ids) & feed.good),
        "lost": len(feed.good - set(ids)),
        "duplicated": sum(ids.values()) - len(ids) + sum(letter_keys.values()) - len(letter_keys),
        "duplicated_outputs": sum(ids.values()) - len(ids),
        "duplicated_dead_letters": sum(letter_keys.values()) - len(letter_keys),
        "dead_lettered": dict(sorted(reasons.items())),
        "poison_in": dict(sorted(feed.poison.items())),
        "recovery_s": recovery,
        "survivor_gap_s": gaps,
        "faults": described,
        "duplicates_before_first_fault": sum(t < faults[0].at for t in duplicate_times)
        if faults else len(duplicate_times),
        "feed_s": round(fed - started, 1),
        "input_failures": len(feed.failed),
        "workers_started": len(fleet.all),
        "exit_codes": fleet.exits,
        "transactions_aborted_logged": sum(
            1 for entries in logs.values() for e in entries
            if e.get("event") == "transaction_aborted"),
        "fenced_logged": sum(1 for entries in logs.values() for e in entries
                             if e.get("event") == "transaction_fenced"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="~2,000 documents, 2 SIGKILLs and a broker restart (the test suite).")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--documents", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None, help="Documents published per second.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--commit-interval-ms", type=int, default=1000)
    parser.add_argument("--poison-share", type=float, default=0.01)
    parser.add_argument("--burst", type=int, default=40, help="Poison records in the burst.")
    parser.add_argument("--broker-down-s", type=float, default=20.0)
    parser.add_argument("--zombie-extra-s", type=float, default=6.0,
                        help="How long past the session timeout a zombie stays frozen.")
    parser.add_argument("--first-fault-s", type=float, default=8.0)
    parser.add_argument("--spacing-s", type=float, default=None,
                        help="Seconds between faults (default: 14; 12 with --small).")
    parser.add_argument("--settle-s", type=float, default=120.0,
                        help="Longest wait for every output after the feed ended.")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="Keep the workers' logs here (default: a temporary directory).")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON last.")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    preset = SMALL if args.small else FULL
    args.documents = args.documents or preset["documents"]
    args.rate = args.rate or preset["rate"]
    args.faults = preset["faults"]
    args.spacing_s = args.spacing_s or (12.0 if args.small else 14.0)
    output = args.output or RESULTS / ("chaos_small.json" if args.small else "chaos.json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        workdir = Path(tmp)
        model = workdir / "model"
        make_tiny_checkpoint(model)
        broker = LocalBroker(workdir / "kafka")
        broker.start()
        try:
            for mode in args.modes:
                logger.info("mode %s: %d documents at %.0f/s, faults %s", mode, args.documents,
                            args.rate, args.faults)
                report[MODES[mode]] = run_mode(mode, args, broker, model, workdir)
        finally:
            broker.stop()
    report["config"] = {
        "command": "python bench/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed, "documents": args.documents, "rate_docs_per_s": args.rate,
        "workers": args.workers, "partitions": PARTITIONS, "session_timeout_ms": 6000,
        "commit_interval_ms": args.commit_interval_ms, "poison_share": args.poison_share,
        "burst": args.burst, "broker_down_s": args.broker_down_s, "faults": args.faults,
        "model": "tiny random BERT (tests/tiny_checkpoint.py)",
        "finished": datetime.now(UTC).isoformat(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
