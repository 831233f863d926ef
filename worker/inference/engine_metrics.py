"""The engine's Prometheus metrics (part of the worker's fixed, documented set: see README)."""

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class EngineMetrics:
    """What the engine measures: its batches, its stage times, out-of-memory splits and the
    loaded model. Registered on ``registry`` (the worker's, so that /metrics shows them next to
    the Kafka side's; a registry of their own when none is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_seconds = Histogram(
            "eurovoc_queue_seconds", "Time a sequence waited in the batcher.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.inference_seconds = Histogram(
            "eurovoc_inference_seconds", "Model forward time per batch.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.oom_splits = Counter(
            "eurovoc_oom_splits",
            "Model batches split in halves after an out-of-memory error (GPU).",
            registry=r,
        )
        self.model_info = Info("eurovoc_model", "The loaded checkpoint.", registry=r)
