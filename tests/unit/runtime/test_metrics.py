"""Metrics with logic of their own: how long backpressure has kept the partitions paused."""

import time

from worker.runtime.metrics import WorkerMetrics


def value(metrics: WorkerMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name)


def test_paused_seconds_counts_from_the_first_pause_until_a_resume():
    metrics = WorkerMetrics()
    assert value(metrics, "eurovoc_paused_seconds") == 0.0
    metrics.set_paused(3)
    time.sleep(0.05)
    first = value(metrics, "eurovoc_paused_seconds")
    metrics.set_paused(4)  # more partitions paused: still the same pause
    time.sleep(0.05)
    assert value(metrics, "eurovoc_paused_seconds") >= first + 0.04 >= 0.09
    assert value(metrics, "eurovoc_paused_partitions") == 4
    metrics.set_paused(0)
    assert value(metrics, "eurovoc_paused_seconds") == 0.0
    assert value(metrics, "eurovoc_paused_partitions") == 0


def test_out_of_memory_splits_are_a_counter():
    metrics = WorkerMetrics()
    metrics.engine.oom_splits.inc(2)
    assert value(metrics, "eurovoc_oom_splits_total") == 2


def test_the_engine_metrics_are_on_the_worker_registry():
    metrics = WorkerMetrics()
    metrics.engine.batch_size.observe(3)
    metrics.engine.model_info.info({"name": "m"})
    assert value(metrics, "eurovoc_batch_size_count") == 1
    assert metrics.registry.get_sample_value("eurovoc_model_info", {"name": "m"}) == 1
    names = {family.name for family in metrics.registry.collect()}
    assert names >= {"eurovoc_batch_size", "eurovoc_batch_tokens", "eurovoc_padding_efficiency",
                     "eurovoc_tokenize_seconds", "eurovoc_queue_seconds",
                     "eurovoc_inference_seconds", "eurovoc_oom_splits", "eurovoc_model",
                     "eurovoc_documents_consumed"}
