"""The worker's Prometheus metrics: a fixed, documented set of names (see README)."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.inference.engine_metrics import LATENCY_BUCKETS, EngineMetrics


class WorkerMetrics:
    """All metrics of one worker, registered on their own registry (so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "eurovoc_documents_consumed", "Records read from the input topic.", registry=r
        )
        self.produced = Counter(
            "eurovoc_documents_produced", "Label messages acknowledged by the broker.", registry=r
        )
        self.dead_lettered = Counter(
            "eurovoc_documents_dead_lettered",
            "Records sent to the dead-letter topic, by error type.",
            ["reason"],
            registry=r,
        )
        self.engine = EngineMetrics(r)
        """The inference engine's metrics, on this registry."""
        self.end_to_end_seconds = Histogram(
            "eurovoc_end_to_end_seconds",
            "From consume to broker acknowledgement of the output (exactly-once: to the "
            "commit of its transaction).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.transactions = Counter(
            "eurovoc_transactions",
            "exactly-once: Kafka transactions ended, by outcome (committed, aborted).",
            ["outcome"],
            registry=r,
        )
        self.transaction_seconds = Histogram(
            "eurovoc_transaction_seconds",
            "exactly-once: from begin to the end of a committed transaction (sends, flush, "
            "offsets, commit).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge(
            "eurovoc_in_flight_documents", "Documents consumed but not yet acknowledged.", registry=r
        )
        self.paused_partitions = Gauge(
            "eurovoc_paused_partitions", "Assigned partitions paused by backpressure.", registry=r
        )
        self._paused_since: float | None = None
        self.paused_seconds = Gauge(
            "eurovoc_paused_seconds",
            "How long the partitions have been paused by backpressure without a resume; 0 while "
            "fetching.",
            registry=r,
        )
        self.paused_seconds.set_function(
            lambda: 0.0 if self._paused_since is None else time.monotonic() - self._paused_since
        )
        self.consumer_lag = Gauge(
            "eurovoc_consumer_lag",
            "End offset minus committed offset, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.oldest_in_flight = Gauge(
            "eurovoc_oldest_in_flight_seconds",
            "Age of the oldest document consumed and not yet acknowledged (0: none).",
            registry=r,
        )
        self.last_progress = Gauge(
            "eurovoc_last_progress_timestamp_seconds",
            "Unix time of the last progress: records fetched, a batch scored, an output "
            "acknowledged, offsets committed (the start until the first).",
            registry=r,
        )
        self.broker_connected = Gauge(
            "eurovoc_broker_connected",
            "1 while the consumer or the producer has a connection to a broker, 0 during an "
            "outage.",
            registry=r,
        )

    def set_paused(self, partitions: int) -> None:
        """Backpressure paused ``partitions`` partitions (0: fetching again)."""
        self.paused_partitions.set(partitions)
        if not partitions:
            self._paused_since = None
        elif self._paused_since is None:
            self._paused_since = time.monotonic()
