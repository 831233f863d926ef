"""Which device trains and in which precision: bf16 on CUDA (fp16 where bf16 is missing), bf16 on
a CPU that computes it natively (AVX512-BF16 or AMX), fp32 otherwise. Detected, never assumed."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from model_training.errors import DataError
from worker.inference.cpu_resources import CPUINFO, cpu_computes_bf16

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when this CPU computes bf16 in hardware, by torch's CPU probe or by the CPU flags
    (``worker.inference.cpu_resources``, which the worker's ``dtype=auto`` reads too)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for probe in probes:
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return cpu_computes_bf16(cpuinfo)


@dataclass(frozen=True)
class DevicePlan:
    """Where the Trainer runs and what its mixed precision is."""

    device: Literal["cpu", "cuda"]
    precision: Precision

    @property
    def use_cpu(self) -> bool:
        return self.device == "cpu"


def plan_device(device: str, precision: str, *, native_cpu_bf16: bool | None = None) -> DevicePlan:
    """Resolve the ``device`` and ``precision`` settings (both may be ``auto``)."""
    if device not in ("auto", "cpu", "cuda"):
        raise DataError(
            f"device {device!r}: use auto, cpu or cuda (choose GPUs with CUDA_VISIBLE_DEVICES; "
            "one process per GPU with torchrun)"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("device cuda: no CUDA device is available")
    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if on_cuda:
        bf16 = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return DevicePlan("cuda", "bf16" if bf16 else "fp16")
        if precision == "bf16" and not bf16:
            raise DataError("precision bf16: this GPU does not support bf16; use fp16 or fp32")
        return DevicePlan("cuda", precision)  # type: ignore[arg-type]
    native = cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16
    if precision == "fp16":
        raise DataError("precision fp16 needs CUDA; on a CPU use bf16 (where native) or fp32")
    if precision == "bf16" and not native:
        raise DataError(
            "precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so it would be "
            "emulated and slower than fp32; use fp32"
        )
    if precision == "auto":
        return DevicePlan("cpu", "bf16" if native else "fp32")
    return DevicePlan("cpu", precision)  # type: ignore[arg-type]
