"""Build the engine's ``ModelRunner`` from its settings: device, dtype, torch threads, checkpoint,
``torch.compile`` and warm-up, in that order (threads before the first torch work; compilation
happens during warm-up)."""

from worker.checkpoint import load_checkpoint
from worker.engine_config import (
    EngineSettings,
    resolve_device,
    resolve_dtype,
    resolve_torch_threads,
)
from worker.model_runner import ModelRunner


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
    runner.compile(settings.torch_compile)
    if settings.warmup:
        runner.warmup(settings.resolve_batch_tokens(device.type, max_length),
                      settings.max_batch_size)
    return runner
