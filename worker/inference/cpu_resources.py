"""What the CPU this process runs on can do: native bf16 arithmetic, and how many cores it may use.

No torch import: the answers come from the operating system (``/proc/cpuinfo``, the scheduler's
affinity mask, the cgroup CPU quota), so they hold before torch is loaded and can be tested with
made-up files.

- :func:`cpu_computes_bf16`: True when the CPU has bf16 arithmetic instructions (x86: AVX512-BF16
  or AMX-BF16; Arm: the ``bf16`` feature). On such CPUs bf16 inference runs at about twice the
  speed of fp32 (oneDNN uses the instructions); elsewhere torch emulates bf16, which is slower
  than fp32, so ``dtype=auto`` must not pick it there.
- :func:`usable_cpus`: the cores the process may really use: the affinity mask (``taskset``,
  Kubernetes static CPU manager), capped by the cgroup quota (Kubernetes CPU limits, ``docker
  --cpus``), rounded up. ``os.cpu_count()`` counts the host's cores and oversubscribes a pod.
"""

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""/proc/cpuinfo flags (x86 ``flags``, Arm ``Features``) of native bf16 arithmetic."""

CPUINFO = Path("/proc/cpuinfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The feature flags of the first processor in ``cpuinfo`` (empty when unreadable)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_computes_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU executes bf16 arithmetic natively (see the module docstring)."""
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)


def _cgroup_quota_v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _cgroup_quota_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _cgroup_directories(root: Path, proc_cgroup: Path) -> list[tuple[Path, str]]:
    """(directory, version) of this process's CPU cgroup and its ancestors, innermost first."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    out: list[tuple[Path, str]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            base, version = root if (root / "cgroup.controllers").exists() else root / "unified", "v2"
        elif "cpu" in controllers.split(","):
            base, version = root / "cpu", "v1"
            if not base.is_dir():
                base = root / controllers
        else:
            continue
        relative = Path(path.lstrip("/"))
        for directory in (relative, *relative.parents):
            out.append((base / directory, version))
    return out


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota (in cores) on this process's cgroup or its ancestors; None = none."""
    limits = []
    for directory, version in _cgroup_directories(root, proc_cgroup):
        read = _cgroup_quota_v2 if version == "v2" else _cgroup_quota_v1
        quota = read(directory)
        if quota is not None:
            limits.append(quota)
    return min(limits) if limits else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Cores this process may use: affinity mask capped by the cgroup quota (rounded up), >= 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        cores = min(cores, math.ceil(limit - 1e-9))
    return max(1, cores)
