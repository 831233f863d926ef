"""Optional ``torch.compile`` of the classifier's forward pass (setting ``torch_compile``).

- ``off`` (default): eager PyTorch.
- ``default``: TorchInductor with dynamic shapes: one compiled graph serves every batch shape
  (GPU batches are padded to multiples of 8 tokens, so the shapes repeat); the engine's warm-up runs
  the shapes once, so compilation happens at start-up, not on the first documents.
- ``reduce-overhead``: the same plus CUDA graphs (replays a recorded graph per shape, removing the
  kernel-launch overhead that dominates small batches on a GPU). CUDA only: on a CPU it falls
  back to ``default`` with a warning.
- ``max-autotune``: Inductor's autotuned kernels (and CUDA graphs on a GPU); long compiles.

Compilation needs a C++ compiler on CPU and Triton on CUDA; a failure surfaces at warm-up,
before the worker reports ready.
"""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]


def effective_mode(mode: CompileMode, device_type: str) -> CompileMode:
    """The mode to use on ``device_type``: CUDA-graph modes become ``default`` off CUDA."""
    if mode == "reduce-overhead" and device_type != "cuda":
        logger.warning("torch_compile=reduce-overhead needs CUDA graphs; using 'default' on %s",
                       device_type)
        return "default"
    return mode


def compiled_forward(
    model: "torch.nn.Module", mode: CompileMode, device_type: str, *, backend: str = "inductor"
) -> Callable[[dict[str, "torch.Tensor"]], "torch.Tensor"]:
    """A forward function ``inputs -> logits`` running ``model`` through ``torch.compile``."""
    import torch

    mode = effective_mode(mode, device_type)
    if mode == "off":
        raise ValueError("compiled_forward needs a compile mode other than 'off'")
    options = {"mode": mode} if backend == "inductor" else {}
    compiled = torch.compile(model, backend=backend, dynamic=True, **options)
    logger.info("model compiled with torch.compile (mode %s, backend %s)", mode, backend)

    def forward(inputs: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return compiled(**inputs).logits

    return forward
