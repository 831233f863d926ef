"""CPU capability and core-count detection, on made-up /proc and cgroup files."""

import os
from pathlib import Path

import pytest

from worker.inference import cpu_resources
from worker.inference.cpu_resources import (
    cgroup_cpu_limit,
    cpu_computes_bf16,
    cpu_flags,
    usable_cpus,
)
from worker.inference.engine_settings import resolve_dtype, resolve_torch_threads

X86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd {extra}\nCPU implementer\t: 0x41\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("template", "extra", "expected"),
    [
        (X86, "avx512_bf16 avx512_vnni", True),
        (X86, "amx_tile amx_bf16", True),
        (X86, "avx512_vnni", False),  # AVX-512 without the bf16 instructions
        (ARM, "bf16 i8mm", True),
        (ARM, "sve", False),
    ],
)
def test_bf16_is_detected_from_the_cpu_flags(tmp_path, template, extra, expected):
    cpuinfo = write(tmp_path / "cpuinfo", template.format(extra=extra))
    assert cpu_computes_bf16(cpuinfo) is expected


def test_unreadable_cpuinfo_means_no_bf16(tmp_path):
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert cpu_computes_bf16(tmp_path / "missing") is False


def test_cgroup_v2_quota_of_the_process_cgroup_or_an_ancestor(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "kubepods" / "cpu.max", "250000 100000\n")  # 2.5 cores on the parent
    write(root / "kubepods" / "pod1" / "cpu.max", "max 100000\n")
    proc = write(tmp_path / "proc_cgroup", "0::/kubepods/pod1\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(2.5)
    assert usable_cpus(root, proc) == min(3, len(os.sched_getaffinity(0)))


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu" / "docker" / "abc" / "cpu.cfs_quota_us", "50000\n")
    write(root / "cpu" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    proc = write(tmp_path / "proc_cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(0.5)
    assert usable_cpus(root, proc) == 1  # half a core still gets one thread

    write(root / "cpu" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))
    assert cgroup_cpu_limit(root, tmp_path / "no-such-file") is None


def test_dtype_auto_on_cpu_follows_the_capability(monkeypatch):
    torch = pytest.importorskip("torch")
    cpu = torch.device("cpu")
    monkeypatch.setattr("worker.inference.engine_settings.cpu_computes_bf16", lambda: True)
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr("worker.inference.engine_settings.cpu_computes_bf16", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16  # an explicit dtype is kept


def test_torch_threads_default_to_the_usable_cores(monkeypatch):
    monkeypatch.setattr("worker.inference.engine_settings.usable_cpus", lambda: 3)
    assert resolve_torch_threads(None) == 3
    assert resolve_torch_threads(1) == 1
    assert cpu_resources.usable_cpus() >= 1
