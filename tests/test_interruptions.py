"""Interruptions: a training job killed mid-epoch (SIGKILL, as a scheduler or an out-of-memory killer does)
resumes from its last checkpoint and ends with exactly the records and weights of an uninterrupted run
(CPU, same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ccgrade.learn import train

TESTS = Path(__file__).resolve().parent
HP = {"arch": "resnet18", "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch": 8, "epochs": 6,
      "augment": {"rotate_deg": 30, "hflip": True, "vflip": True, "copies": 1}, "class_weight": "balanced",
      "checkpoint_s": 0}  # a resume state after every epoch (the default is at most once a minute)

SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from test_train import synthetic
    from ccgrade.learn import train
    data, split = synthetic(per=8)
    train.train_model(data, split, {hp!r}, seed=5, outdir={out!r}, progress=lambda m: print(m, flush=True))
    print("finished", flush=True)
""")


def run_to_the_end(out: Path) -> None:
    from test_train import synthetic

    torch.set_num_threads(1)
    data, split = synthetic(per=8)
    train.train_model(data, split, HP, seed=5, outdir=out, progress=lambda m: None)


@pytest.mark.slow
def test_a_job_killed_mid_epoch_resumes_to_the_same_result(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(tests=str(TESTS), hp=HP, out=str(killed))],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if line.startswith("epoch 2/"):  # the epoch-2 state is on disk (saved before this line): kill in epoch 3
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen
    assert not any(s.startswith("finished") for s in seen)
    assert (killed / "last.pt").exists() and not (killed / "best.pt").exists() and not (killed / "epochs.tsv").exists()
    # rerun: resumes after the saved epoch and finishes
    msgs = []
    from test_train import synthetic

    torch.set_num_threads(1)
    data, split = synthetic(per=8)
    train.train_model(data, split, HP, seed=5, outdir=killed, progress=msgs.append)
    assert msgs[0] == "resuming after epoch 1", msgs[:2]
    ref = tmp_path / "uninterrupted"
    run_to_the_end(ref)
    a, b = (pd.read_csv(d / "epochs.tsv", sep="\t") for d in (ref, killed))
    cols = ["epoch", "loss", "val_auc", "val_loss"]
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())
    wa, wb = torch.load(ref / "best.pt"), torch.load(killed / "best.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_outputs_of_a_killed_snakemake_job_are_never_taken_as_results(tmp_path):
    """Snakemake killed (SIGKILL, with its job) while a job writes its outputs: a plain rerun refuses the
    incomplete outputs, naming them (after --unlock when the kill left the folder locked); with
    --rerun-incomplete (set in workflow/profiles/) it reruns the job, and the outputs equal those of an
    uninterrupted run."""
    import time

    import yaml

    from conftest import REPO, tiny_config

    def smk(wd, *args):
        return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(wd),
                               "--cores", "1", *args], capture_output=True, text=True)

    target = "resources/demo_cohort/annotations/DEMO001/cmp/mask.nii.gz"
    cfg = tiny_config()
    cfg["demo"]["n_slices"] = 40  # a longer write (4 x 40 files) to interrupt
    for d in ("killed", "clean"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                             str(tmp_path / "killed"), "--cores", "1", target],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    partial = tmp_path / "killed/resources/demo_cohort/dicom/DEMO001"  # the job's first output, written first
    t = time.time()
    while not (partial.exists() and any(partial.rglob("*/*"))) and proc.poll() is None and time.time() - t < 120:
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "killed" / target).exists()  # killed half-way: some outputs written, others not
    def unlocked(*args):  # the killed Snakemake may leave its lock: remove it as the message says, once
        r = smk(tmp_path / "killed", *args)
        if r.returncode and "--unlock" in r.stderr:
            assert smk(tmp_path / "killed", "--unlock").returncode == 0
            r = smk(tmp_path / "killed", *args)
        return r

    r = unlocked(target)
    text = r.stdout + r.stderr
    assert "incomplete" in text.lower() and "DEMO001" in text, text[-3000:]
    if r.returncode:  # refused, naming the incomplete files: rerun them, as the profiles do
        r = unlocked("--rerun-incomplete", target)
    assert r.returncode == 0, r.stderr[-3000:]
    assert smk(tmp_path / "clean", target).returncode == 0
    for rel in (target, "resources/demo_cohort/annotations/DEMO001/ep/polygons.json"):
        assert (tmp_path / "killed" / rel).read_bytes() == (tmp_path / "clean" / rel).read_bytes(), rel
    dicoms = sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean/resources/demo_cohort/dicom/DEMO001").rglob("*/*"))
    assert dicoms and all((tmp_path / "killed" / p).read_bytes() == (tmp_path / "clean" / p).read_bytes() for p in dicoms)
