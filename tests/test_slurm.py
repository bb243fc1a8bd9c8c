"""Integration on a real SLURM: a reduced demo study through the repository's SLURM profile
(snakemake-executor-plugin-slurm) gives the same tables as the same study run locally.

Marked ``cluster`` (and slow); run by .ci/run. It brings up a single-node SLURM with
workflow/scripts/slurm-single-node.sh (installing Debian's slurm-wlm and munge when missing; root
needed) and tears down what it started. Where that cannot be done here, the test is skipped with the
script's reason (e.g. not root, no apt-get, a daemon that did not start).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, reduced_config, share_secret

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
SCRIPT = REPO / "workflow/scripts/slurm-single-node.sh"


@pytest.fixture(scope="module")
def cluster():
    if sys.platform != "linux" or shutil.which("bash") is None:
        pytest.skip("the single-node SLURM needs Linux")
    r = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    if r.returncode == 3:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, f"slurm-single-node.sh up failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    yield r.stderr
    subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, text=True, timeout=120)


#: Snakemake's command line with the SLURM plugin's poll capped at 5 s. The plugin (2.8.0) waits 10 s longer after
#: each status check that finds no job finished (up to 180 s), so a 20 s job can be seen done 45 s after it started:
#: on this test's chain of short jobs the back-off cost ~40 s of ~6 min (measured 2026-12-05, idle 2-core machine),
#: a poll setting, not anything this workflow does. Only the main process polls; the jobs run as submitted.
CAPPED_POLL = textwrap.dedent("""
    import snakemake_executor_plugin_slurm as slurm
    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

    base = RemoteExecutor.next_seconds_between_status_checks
    slurm.Executor.next_seconds_between_status_checks = property(
        base.fget, lambda self, v: base.fset(self, None if v is None else min(v, 5)))
    from snakemake.cli import main

    main()
""")


def smk(workdir, *args, capped_poll: bool = False):
    launch = ["-c", CAPPED_POLL] if capped_poll else ["-m", "snakemake"]
    cmd = [sys.executable, *launch, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONHASHSEED": "0"})
    if r.returncode:
        raise AssertionError(f"snakemake failed ({r.returncode}):\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}")
    return r, time.time() - t


TABLES = ["results/tables/baseline_low_vs_high.csv", "results/tables/baseline_train_vs_test_li.csv",
          "results/tables/exclusions.csv", "results/tables/tumour_geometry.csv", "results/tables/cui_table3.csv",
          "results/tables/cui_table4.csv", "results/splits/cui.tsv", "results/splits/li.tsv", "results/splits/dai.tsv",
          "results/cohort/cohort.tsv", "results/crops/manifest.tsv",
          "results/models/cui/box/resnet34/cmp/base/fold0/seed1/predictions.tsv"]


def test_reduced_study_on_slurm_equals_the_local_run(cluster, reduced_local_run, tmp_path):
    local, on_slurm = reduced_local_run, tmp_path / "slurm"
    on_slurm.mkdir()
    (on_slurm / "config.yaml").write_text(yaml.safe_dump(reduced_config()))
    share_secret(on_slurm)
    # the repository's profile with the edits its header asks of a user, for this test cluster: no sacct
    # (squeue status), no account, and a node of 2 CPUs and ~20 GB (the profile asks 8 CPUs, 32 GB per GPU job)
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    profile.update({"slurm-status-command": "squeue", "slurm-no-account": True,
                    "slurm-init-seconds-before-status-checks": 5, "latency-wait": 5, "jobs": 4})
    profile["set-threads"]["train_model"] = 2
    profile["set-resources"]["train_model"].update(cpus_per_gpu=2, mem_mb=4000, runtime=30)
    profile["default-resources"].update(mem_mb=2000, runtime=30)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    r, t_slurm = smk(on_slurm, "--workflow-profile", str(tmp_path / "profile"), "--verbose", capped_poll=True)
    log = r.stdout + r.stderr
    print(f"reduced study on SLURM: {t_slurm:.0f} s")
    # every job went through sbatch; the training cell asked SLURM for a GPU on the gpu partition
    calls = [line for line in log.splitlines() if "sbatch" in line and "--parsable" in line]
    train_calls = [c for c in calls if "--comment rule_train_model" in c.replace("'", "")]
    assert calls and train_calls, log[-5000:]
    for c in train_calls:
        c = c.replace("'", "")
        assert re.search(r"--gpus[= ]1\b", c) and "-p gpu" in c and "--cpus-per-gpu=2" in c, c
    assert not any("--gpus" in c for c in calls if c not in train_calls)
    assert all("-p cpu" in c.replace("'", "") for c in calls if c not in train_calls)
    for rel in TABLES:
        a, b = (local / rel).read_bytes(), (on_slurm / rel).read_bytes()
        assert a == b, f"{rel} differs between the local and the SLURM run"
    meta = json.loads((on_slurm / "results/models/cui/box/resnet34/cmp/base/fold0/seed1/meta.json").read_text())
    assert meta["device"] == "cpu"  # a fake GPU: SLURM allocated it, torch found no CUDA and ran on the CPU
    # the figures exist in both (PNG bytes may carry timestamps; the tables above are the numbers)
    for rel in ("results/figures/cui_roc.png", "results/figures/roi_montage/DEMO001.png"):
        assert (on_slurm / rel).stat().st_size > 1000
    r2, _ = smk(on_slurm, "-n", "--cores", "2")
    assert "Nothing to be done" in r2.stdout + r2.stderr
    pd.testing.assert_frame_equal(pd.read_csv(local / TABLES[4]), pd.read_csv(on_slurm / TABLES[4]))
