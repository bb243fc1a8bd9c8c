"""The demo study's whole DAG, planned (not run): every output it declared before a change is still declared
(issue 26: a leaner run drops nothing), and `--cores` above the machine does not multiply the load.

After an intended change of the demo's outputs, rewrite the list:  python tests/test_demo_outputs.py --update
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccgrade.learn import machine

REPO = Path(__file__).resolve().parents[1]
LIST = REPO / "tests" / "data" / "demo_outputs.txt"


def smk(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def declared_outputs(workdir: Path) -> list[str]:
    r = smk(workdir, "--summary", "--cores", "1")
    rows = [line.split("\t")[0] for line in r.stdout.splitlines()[1:] if line.strip()]
    return sorted(set(rows))


@pytest.mark.slow
def test_the_demo_declares_every_output_it_declared_before(tmp_path):
    got, want = set(declared_outputs(tmp_path)), set(LIST.read_text().split())
    dropped, added = sorted(want - got), sorted(got - want)
    assert not dropped and not added, (
        f"{len(dropped)} output(s) no longer made, e.g. {dropped[:5]}; {len(added)} new, e.g. {added[:5]}. If intended: "
        "python tests/test_demo_outputs.py --update")


@pytest.mark.slow
def test_cores_above_the_machine_run_as_many_threads_as_it_has(tmp_path):
    n = machine.usable_cpus()
    r = smk(tmp_path, "-n", "--cores", str(n + 62), "--resources", "gpu=1")
    out = r.stdout + r.stderr
    assert f"--cores {n + 62} on a machine with {n} usable CPUs: at most {n} threads run at once" in out
    # a training cell takes the gpu resource only where it trains on a GPU (without one, cells share the cores)
    want = f"gpu={int(machine.local_gpu('auto'))}"
    res = re.findall(r"rule train_model:.*?resources: ([^\n]*)", out, re.S)
    assert res and all(want in r for r in res), res[:2]


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        LIST.write_text("\n".join(declared_outputs(Path(d))) + "\n")
    print(f"wrote {LIST}")
