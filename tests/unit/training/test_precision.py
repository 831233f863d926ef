"""Device and precision: bf16 on a CPU only where it is native, detected from the CPU itself."""

import pytest
import torch

from model_training import precision
from model_training.errors import DataError
from model_training.precision import cpu_has_native_bf16, plan_device
from worker.inference.cpu_resources import cpu_flags

AVX512_BF16 = (
    "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n"
)
AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


@pytest.fixture
def no_torch_probe(monkeypatch):
    """The CPU flags decide (as on a torch without its own probe)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)


def test_cpu_flags_come_from_cpuinfo(tmp_path, no_torch_probe):
    info = tmp_path / "cpuinfo"
    info.write_text(AVX512_BF16)
    assert {"avx512_bf16", "amx_tile"} <= cpu_flags(info)
    assert cpu_has_native_bf16(info)
    info.write_text(AVX2_ONLY)
    assert not cpu_has_native_bf16(info)
    assert cpu_flags(tmp_path / "absent") == set()
    assert not cpu_has_native_bf16(tmp_path / "absent")


def test_torch_probe_counts_too(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16(tmp_path / "absent")


def test_cpu_plans(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert plan_device("auto", "auto", native_cpu_bf16=True).precision == "bf16"
    plan = plan_device("auto", "auto", native_cpu_bf16=False)
    assert (plan.device, plan.precision, plan.use_cpu) == ("cpu", "fp32", True)
    assert plan_device("cpu", "fp32", native_cpu_bf16=True).precision == "fp32"
    with pytest.raises(DataError, match="no native bf16"):
        plan_device("cpu", "bf16", native_cpu_bf16=False)
    with pytest.raises(DataError, match="fp16 needs CUDA"):
        plan_device("cpu", "fp16", native_cpu_bf16=True)
    with pytest.raises(DataError, match="no CUDA device"):
        plan_device("cuda", "auto")
    with pytest.raises(DataError, match="CUDA_VISIBLE_DEVICES"):
        plan_device("cuda:1", "auto")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert plan_device("auto", "auto").precision == "fp32"


def test_cuda_plans(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert plan_device("auto", "auto") == precision.DevicePlan("cuda", "bf16")
    assert plan_device("cuda", "fp16").precision == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert plan_device("auto", "auto").precision == "fp16"
    with pytest.raises(DataError, match="does not support bf16"):
        plan_device("cuda", "bf16")
    assert plan_device("cpu", "auto", native_cpu_bf16=False).device == "cpu"
