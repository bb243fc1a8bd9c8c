"""What this machine offers a local run, read without importing torch (the Snakefile asks at parse time).

- ``usable_cpus``: the CPUs this process may run on: its affinity mask, lowered by a cgroup CPU quota
  (containers, ``docker --cpus``); a local run never keeps more compute threads busy than this;
- ``local_gpu``: whether training cells will find a GPU here (``training.device``; for ``auto``, a CUDA or
  ROCm device node not hidden by ``CUDA_VISIBLE_DEVICES``): only then do they take the ``gpu`` resource;
- ``train_threads``: a training cell's threads: one on CPUs (cells are many and independent, so they share
  the cores as separate jobs, and a cell's CPU weights do not depend on how many cores the machine has),
  two beside a GPU (the host's share of its work).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The CPU quota of this process's cgroup in whole CPUs (rounded up), or None without one."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: -1 means none
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        return None


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the affinity mask (else the CPU count), capped by a cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(n, quota) if quota else n)


def local_gpu(device: str, environ: dict | None = None, dev: Path = Path("/dev")) -> bool:
    """Whether ``training.device`` trains on a GPU of this machine."""
    device = str(device).lower()
    if device == "cpu":
        return False
    if device != "auto":  # cuda, cuda:1, ...: the user says there is one
        return True
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any((dev / name).exists() for name in ("nvidia0", "kfd"))


def train_threads(gpu: bool) -> int:
    return 2 if gpu else 1
