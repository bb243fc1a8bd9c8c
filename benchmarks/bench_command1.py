"""README command 1 on a clean clone, timed: wall time, CPU time, load, and where the CPU-seconds went.

    python benchmarks/bench_command1.py [--json out.json] [--files out.txt] [--keep DIR]

It clones this checkout's HEAD into a fresh folder, links the repository's built ``.venv`` into it (the
budget is for a built venv), and runs the README's command 1 as written there (less ``bash envs/setup.sh &&``),
sampling the number of runnable threads on the machine once a second. Then it sums Snakemake's per-rule
benchmark files (``results/benchmarks/``: each job's wall ``s`` and ``cpu_time``) by rule and prints the
table, with the Snakemake processes' own CPU (all CPU of the command minus the jobs'). ``--files`` writes the
sorted list of files under ``results/`` (compare two commits' lists to show nothing was dropped).

Budget (issue 26): ≤ 15 minutes on an idle 2-core, 24 GB machine, about two runnable threads on average.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_command1(readme: Path = REPO / "README.md") -> str:
    """The line after '# 1.' in the README's "two commands" block, without the venv set-up."""
    lines = readme.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("# 1."))
    cmd = lines[i + 1].strip()
    return re.sub(r"^bash envs/setup\.sh\s*&&\s*", "", cmd)


def runnable() -> int:
    """Runnable threads on the machine now (/proc/stat procs_running, this sampler excluded)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("procs_running"):
            return int(line.split()[1]) - 1
    return 0


def sample_load(stop: threading.Event, out: list[int], every: float = 1.0) -> None:
    while not stop.wait(every):
        out.append(runnable())


def per_rule(bench_dir: Path) -> dict[str, dict]:
    """Jobs, wall and CPU seconds per rule, from Snakemake's benchmark files (the folder under
    results/benchmarks/ names the rule; a file directly in it, its stem)."""
    out: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0})
    for f in sorted(bench_dir.rglob("*.tsv")):
        rel = f.relative_to(bench_dir)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        with f.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                out[rule]["jobs"] += 1
                out[rule]["wall_s"] += float(row["s"])
                cpu = row.get("cpu_time", "NA")
                out[rule]["cpu_s"] += float(cpu) if cpu not in ("NA", "") else 0.0
    return dict(out)


def run(workdir: Path, cmd: str) -> dict:
    loads: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_load, args=(stop, loads), daemon=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    sampler.start()
    r = subprocess.run(["bash", "-c", cmd], cwd=workdir, capture_output=True, text=True)
    wall = time.time() - t0
    stop.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"command 1 failed (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    jobs_done = len(re.findall(r"Finished jobid", r.stdout + r.stderr))
    return {"wall_s": wall, "cpu_s": cpu, "mean_runnable": sum(loads) / max(1, len(loads)),
            "max_runnable": max(loads, default=0), "jobs_logged": jobs_done}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--files", help="write the sorted list of files under results/ here")
    ap.add_argument("--keep", help="clone into this folder and keep it (default: a temporary one, removed)")
    a = ap.parse_args(argv)
    if not (REPO / ".venv" / "bin" / "snakemake").exists():
        sys.exit("build the venv first: bash envs/setup.sh")
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="ccgrade-cmd1-"))
    clone = base / "ccgrade"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(REPO / ".venv")
    cmd = readme_command1()
    print(f"[bench] {clone}: {cmd}", flush=True)
    fig = run(clone, cmd)
    rules = per_rule(clone / "results" / "benchmarks")
    jobs_cpu = sum(v["cpu_s"] for v in rules.values())
    fig.update(cpus=len(os.sched_getaffinity(0)), jobs=sum(v["jobs"] for v in rules.values()), jobs_cpu_s=jobs_cpu,
               snakemake_cpu_s=fig["cpu_s"] - jobs_cpu, per_rule=rules,
               commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                                     text=True).stdout.strip(), date=time.strftime("%Y-%m-%d"))
    files = sorted(str(p.relative_to(clone)) for p in (clone / "results").rglob("*") if p.is_file()
                   and "benchmarks" not in p.parts and "logs" not in p.parts)
    fig["files"] = len(files)
    print(f"{'rule':<28}{'jobs':>6}{'wall s':>10}{'CPU s':>10}")
    for name, v in sorted(rules.items(), key=lambda kv: -kv[1]["cpu_s"]):
        print(f"{name:<28}{v['jobs']:>6}{v['wall_s']:>10.1f}{v['cpu_s']:>10.1f}")
    print(f"command 1: {fig['wall_s'] / 60:.1f} min wall on {fig['cpus']} CPUs; {fig['cpu_s']:.0f} CPU-s in all, "
          f"{jobs_cpu:.0f} in {fig['jobs']} jobs' benchmark records, {fig['snakemake_cpu_s']:.0f} in Snakemake and "
          f"processes without one; mean runnable threads {fig['mean_runnable']:.2f} (max {fig['max_runnable']}); "
          f"{len(files)} files under results/ (logs and benchmarks aside)")
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=1))
    if a.files:
        Path(a.files).write_text("\n".join(files) + "\n")
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
