"""Determinism and provenance: two runs of the same study with the same seed, in separate folders, give
byte-identical splits, tables, crops manifest, model predictions and figures (CPU), and each run records
what produced it (package versions, config hash, git commit) beside its results."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata

import pytest
import yaml

from conftest import REPO, run_reduced_study

pytestmark = pytest.mark.slow


def outputs(root):
    """Every table, split, cohort, manifest, prediction and figure of a run, by relative path."""
    keep = (".csv", ".md", ".tsv", ".json", ".png", ".pdf")
    timing_dirs = ("results/logs/", "results/benchmarks/")  # wall-clock records: they differ by design
    timing_files = ("results/provenance.json", "meta.json", "epochs.tsv",  # (epochs.tsv is compared below)
                    "results/privacy_scan.json")  # its byte counts include the logs' (compared below without them)
    out = {}
    for path in sorted((root / "results").rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file() and rel.endswith(keep) and not rel.startswith(timing_dirs) and not rel.endswith(timing_files):
            out[rel] = path.read_bytes()
    return out


def test_two_runs_are_byte_identical_and_say_what_made_them(reduced_local_run, tmp_path):
    first = reduced_local_run
    run_reduced_study(tmp_path / "b")
    a, b = outputs(first), outputs(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 40
    assert any(k.endswith("predictions.tsv") for k in a) and any(k.endswith(".png") for k in a)
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ
    # the epochs' records differ only in their timings (seconds, images/s); the numbers are identical
    import pandas as pd

    cell = "results/models/cui/box/resnet34/cmp/base/fold0/seed1"
    ea, eb = (pd.read_csv(d / cell / "epochs.tsv", sep="\t") for d in (first, tmp_path / "b"))
    pd.testing.assert_frame_equal(ea.drop(columns=["seconds", "images_per_s"]), eb.drop(columns=["seconds", "images_per_s"]))
    # provenance: the config's hash, the commit of this checkout, the installed versions
    prov = json.loads((first / "results/provenance.json").read_text())
    cfg = yaml.safe_load((first / "config.yaml").read_text())
    want = hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert prov["config_sha256"] == want and prov["seed"] == cfg["seed"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert prov["git"]["commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert prov["packages"]["torch"] == metadata.version("torch")
    assert prov["packages"]["pydicom"] == metadata.version("pydicom")
    assert prov["accelerator"]["cuda"] is False or prov["accelerator"]["device"]
    # the privacy scans saw the same files and values (the logs' sizes differ by their timings)
    sa, sb = (json.loads((d / "results/privacy_scan.json").read_text()) for d in (first, tmp_path / "b"))
    assert {k: sa[k] for k in ("files", "needles", "hits")} == {k: sb[k] for k in ("files", "needles", "hits")}
    assert sa["hits"] == 0 and prov["privacy"] == "pseudonymise"
