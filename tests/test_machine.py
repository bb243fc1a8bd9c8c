"""What a local run takes from the machine (ccgrade.learn.machine): CPUs it may use, whether cells train on a GPU."""

from __future__ import annotations

import os

from ccgrade.learn import machine


def test_a_cgroup_quota_caps_the_affinity_mask(tmp_path):
    n = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")  # cgroup v2 without a quota
    assert machine.usable_cpus(tmp_path) == n
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one, never zero
    assert machine.usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(n + 7) * 100000} 100000\n")  # a quota above the mask: the mask
    assert machine.usable_cpus(tmp_path) == n
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")  # cgroup v1: 1.5 CPUs -> 2
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert machine.usable_cpus(v1) == min(n, 2)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert machine.usable_cpus(v1) == n
    assert machine.usable_cpus(tmp_path / "absent") == n


def test_cells_take_the_gpu_resource_only_where_they_train_on_a_gpu(tmp_path):
    assert not machine.local_gpu("cpu", {}, tmp_path)
    assert machine.local_gpu("cuda:1", {}, tmp_path)  # named: the user says there is one
    assert not machine.local_gpu("auto", {}, tmp_path)  # no device node
    (tmp_path / "nvidia0").write_text("")
    assert machine.local_gpu("auto", {}, tmp_path)
    assert not machine.local_gpu("auto", {"CUDA_VISIBLE_DEVICES": ""}, tmp_path)  # hidden
    assert not machine.local_gpu("auto", {"CUDA_VISIBLE_DEVICES": "-1"}, tmp_path)
    assert machine.local_gpu("auto", {"CUDA_VISIBLE_DEVICES": "0"}, tmp_path)
    assert machine.train_threads(False) == 1 and machine.train_threads(True) == 2
