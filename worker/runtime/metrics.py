"""The worker's Prometheus metrics: a fixed, documented set of names (see README)."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


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
        self.batch_size = Histogram(
            "eurovoc_batch_size", "Sequences per model batch.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "eurovoc_batch_tokens",
            "Padded tokens per model batch (longest sequence x sequences).",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.padding_efficiency = Histogram(
            "eurovoc_padding_efficiency",
            "Real tokens / padded tokens per model batch.",
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.tokenize_seconds = Histogram(
            "eurovoc_tokenize_seconds", "Tokenizer time per submitted group.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_seconds = Histogram(
            "eurovoc_queue_seconds", "Time a sequence waited in the batcher.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.inference_seconds = Histogram(
            "eurovoc_inference_seconds", "Model forward time per batch.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "eurovoc_end_to_end_seconds",
            "From consume to broker acknowledgement of the output (exactly-once: to the "
            "commit of its transaction).",
            buckets=_LATENCY_BUCKETS, registry=r,
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
            buckets=_LATENCY_BUCKETS, registry=r,
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
        self.oom_splits = Counter(
            "eurovoc_oom_splits",
            "Model batches split in halves after an out-of-memory error (GPU).",
            registry=r,
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
            "1 while the consumer has a connection to a broker, 0 during an outage.",
            registry=r,
        )
        self.model_info = Info("eurovoc_model", "The loaded checkpoint.", registry=r)

    def set_paused(self, partitions: int) -> None:
        """Backpressure paused ``partitions`` partitions (0: fetching again)."""
        self.paused_partitions.set(partitions)
        if not partitions:
            self._paused_since = None
        elif self._paused_since is None:
            self._paused_since = time.monotonic()
