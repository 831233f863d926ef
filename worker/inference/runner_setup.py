"""Build the engine's ``ModelRunner`` from its settings: device, dtype, torch threads, checkpoint,
``torch.compile`` and warm-up, in that order (threads before the first torch work; compilation
happens during warm-up). A warning names every inference setting that differs from those the
checkpoint's thresholds were tuned with (``thresholds.inference`` in the manifest)."""

import logging

from worker.inference.checkpoint import load_checkpoint
from worker.inference.engine_settings import (
    EngineSettings,
    dtype_name,
    resolve_device,
    resolve_dtype,
    resolve_torch_threads,
)
from worker.inference.model_runner import ModelRunner

logger = logging.getLogger(__name__)


def build_runner(settings: EngineSettings) -> ModelRunner:
    """Load the checkpoint the settings name and make it ready to score (warmed up unless
    ``warmup`` is off)."""
    import torch

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    torch.set_num_threads(resolve_torch_threads(settings.torch_threads))
    checkpoint = load_checkpoint(settings.model, device=device, dtype=dtype)
    max_length = settings.resolve_max_length(checkpoint.manifest.max_length)
    runner = ModelRunner(checkpoint, max_length=max_length)
    changed = untuned_settings(settings, runner)
    if changed:
        logger.warning(
            "the checkpoint's thresholds were tuned with other inference settings (%s); for "
            "the quality they promise, re-tune them with eurovoc-train tune-thresholds and "
            "this worker's engine flags", ", ".join(changed))
    runner.compile(settings.torch_compile)
    if settings.warmup:
        runner.warmup(settings.resolve_batch_tokens(device.type, max_length),
                      settings.max_batch_size)
    return runner


def untuned_settings(settings: EngineSettings, runner: ModelRunner) -> list[str]:
    """``"name: tuned -> now"`` for each inference setting that differs from the ones recorded
    next to the thresholds (none when nothing is recorded; the device type is not compared)."""
    recorded = runner.manifest.thresholds.inference
    if recorded is None:
        return []
    now: dict[str, object] = {"dtype": dtype_name(runner.dtype),
                              "max_length": runner.max_length,
                              "long_documents": settings.long_documents}
    if settings.long_documents == recorded.long_documents == "chunk":
        now |= {"max_chunks": settings.max_chunks, "chunk_stride": settings.chunk_stride,
                "chunk_aggregation": settings.chunk_aggregation}
    return [f"{name}: {getattr(recorded, name)} -> {value}" for name, value in now.items()
            if getattr(recorded, name) != value]
