"""Benchmark (prints a table; not a test): coverage of F1 intervals at small test sets.

Usage: .venv/bin/python benchmarks/bench_f1_coverage.py [--cohorts 2000] [--boot 500] [--sizes 16 20 40 100]
       [--labels random fixed] [--json F]

Simulated test sets of 16, 20, 40 and 100 patients and a binary call with sensitivity 0.8 and specificity 0.75,
with two ways of drawing the labels:

- random (a test set drawn from a population, e.g. a whole external centre): each patient positive with
  probability 0.4; the target is the population's F1, 2 PPV sens / (PPV + sens) with PPV = prev sens /
  (prev sens + (1 - prev)(1 - spec)) at prev 0.4: 0.7356;
- fixed (a split stratified by grade): exactly 6/10, 8/12, 16/24, 40/60 positive/negative patients; the target
  is the same formula at the test set's own prevalence (0.375 at 16 patients: 0.7218; 0.4 otherwise).

- unclustered: one unit (call) per patient;
- clustered: 3-8 images per patient (uniform), each image called high where a latent normal score
  sqrt(ICC) u_patient + sqrt(1 - ICC) e_image exceeds the class's threshold, ICC 0.5 on the latent scale, so each
  image's call keeps sensitivity 0.8 and specificity 0.75 but a patient's calls agree more often than chance; the
  image count is independent of the label, so the image-level F1 (a ratio of expectations) is the same.

For each design and size, ``--cohorts`` cohorts (fixed seeds) and the F1 intervals of ``ccgrade.proportions``,
with the patient of each image as the cluster in the clustered design:

- ``f1_bootstrap``: the patient-level, class-stratified percentile bootstrap, ``--boot`` resamples (500 here
  against 2,000 in the pipeline: that only adds Monte Carlo error to its quantiles), seed = cohort number;
- ``f1_wilson``: Wilson's interval of the Jaccard index J = TP / (TP + FP + FN), clustered on the effective
  sample size, mapped to F1 = 2J / (1 + J);
- the bootstrap with the Jaccard-Wilson fallback where it collapses (``f1_interval``'s rule, applied to the same
  two intervals);
- the delta method (Takahashi et al. 2022): F1 +- z sqrt(4 TP (FP + FN) m / (m + TP)^4), m = TP + FP + FN,
  times the design effect of J's proportion when clustered, clipped to [0, 1].

Coverage of the true F1, mean width, and the share of zero-width intervals. F1 is undefined (and the cohort
dropped, its count printed) only with no positive label and no positive call. With 2,000 cohorts the Monte
Carlo SE of a coverage of 0.95 is 0.005. About 25 CPU-seconds at the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade import proportions  # noqa: E402

SIZES = (16, 20, 40, 100)
PREV, SENS, SPEC, ICC = 0.4, 0.8, 0.75, 0.5
METHODS = ("percentile bootstrap", "Jaccard-Wilson", "bootstrap, Jaccard-Wilson where it collapses",
           "delta method (Takahashi)")


def true_f1(prev: float = PREV, sens: float = SENS, spec: float = SPEC) -> float:
    ppv = prev * sens / (prev * sens + (1 - prev) * (1 - spec))
    return 2 * ppv * sens / (ppv + sens)


def n_positive(n: int) -> int:
    return int(round(PREV * n))


def cohort(rng: np.random.Generator, n: int, clustered: bool, random_labels: bool):
    """Labels and calls (units) and the patient of each unit (None unclustered)."""
    yp = (rng.random(n) < PREV).astype(int) if random_labels else \
        np.r_[np.ones(n_positive(n), int), np.zeros(n - n_positive(n), int)]
    if not clustered:
        p_call = np.where(yp == 1, SENS, 1 - SPEC)
        return yp, (rng.random(n) < p_call).astype(int), None
    pid = np.repeat(np.arange(n), rng.integers(3, 9, n))
    latent = np.sqrt(ICC) * rng.standard_normal(n)[pid] + np.sqrt(1 - ICC) * rng.standard_normal(len(pid))
    y = yp[pid]
    cut = np.where(y == 1, sps.norm.ppf(1 - SENS), sps.norm.ppf(SPEC))  # P(latent > cut) = sens, 1 - spec
    return y, (latent > cut).astype(int), pid


def delta_interval(y: np.ndarray, call: np.ndarray, pid: np.ndarray | None, z: float = 1.959963984540054):
    """F1 +- z SE, the multinomial delta-method variance (times J's design effect with patients), clipped."""
    tp, fp, fn = (int(((y == a) & (call == b)).sum()) for a, b in ((1, 1), (0, 1), (1, 0)))
    m = tp + fp + fn
    f1 = 2 * tp / (m + tp)
    var = 4 * tp * (fp + fn) * m / (m + tp) ** 4
    if pid is not None:
        flagged = (y == 1) | (call == 1)
        var *= proportions.design_effect(((y == 1) & (call == 1))[flagged], pid[flagged])
    half = z * np.sqrt(var)
    return max(0.0, f1 - half), min(1.0, f1 + half)


def intervals(y, call, pid, n_boot: int, seed: int) -> dict:
    boot = proportions.f1_bootstrap(y, call, pid, n_boot=n_boot, seed=seed)
    jw = proportions.f1_wilson(y, call, pid)
    combined = boot if boot[1] > boot[0] else jw
    return dict(zip(METHODS, (boot, jw, combined, delta_interval(y, call, pid))))


def coverage(cohorts: int, n_boot: int, seed: int, sizes=SIZES, random_labels: bool = False) -> list[dict]:
    rows = []
    for ci, clustered in enumerate((False, True)):
        for n in sizes:
            target = true_f1() if random_labels else true_f1(n_positive(n) / n)
            rng = np.random.default_rng([seed, ci, n, int(random_labels)])
            res = {m: [] for m in METHODS}
            undefined = 0
            for r in range(cohorts):
                y, call, pid = cohort(rng, n, clustered, random_labels)
                if not ((y == 1) | (call == 1)).any():
                    undefined += 1
                    continue
                for m, (lo, hi) in intervals(y, call, pid, n_boot, r).items():
                    res[m].append((lo <= target <= hi, hi - lo, hi - lo <= 1e-12))
            for m, v in res.items():
                v = np.array(v, float)
                rows.append({"labels": "random" if random_labels else "fixed",
                             "design": "clustered" if clustered else "unclustered", "patients": n,
                             "true_f1": target, "method": m,
                             "coverage": v[:, 0].mean(), "width": v[:, 1].mean(), "zero_width": v[:, 2].mean(),
                             "cohorts": len(v), "undefined": undefined})
    return rows


def print_table(rows: list[dict], cohorts: int, n_boot: int) -> None:
    print(f"\n{cohorts} cohorts per cell; bootstrap {n_boot} resamples; coverage of the true F1 (nominal 0.95), "
          "mean width in brackets; zero-width share\n")
    print("| labels | design | patients | true F1 | " + " | ".join(METHODS) + " | zero width: bootstrap, delta |")
    print("|---|---|---|---|" + "---|" * (len(METHODS) + 1))
    for i in range(0, len(rows), len(METHODS)):
        cell = {r["method"]: r for r in rows[i:i + len(METHODS)]}
        r0 = rows[i]
        print(f"| {r0['labels']} | {r0['design']} | {r0['patients']} | {r0['true_f1']:.4f} | "
              + " | ".join(f"{cell[m]['coverage']:.3f} ({cell[m]['width']:.3f})" for m in METHODS)
              + f" | {cell[METHODS[0]]['zero_width']:.3f}, {cell[METHODS[3]]['zero_width']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohorts", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=500, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=2031)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="patients per test set")
    ap.add_argument("--labels", nargs="+", choices=("random", "fixed"), default=["random", "fixed"],
                    help="patients positive with probability 0.4, or exactly 40%%")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    t0 = time.process_time()
    rows = [r for lab in a.labels for r in coverage(a.cohorts, a.boot, a.seed, a.sizes, lab == "random")]
    print_table(rows, a.cohorts, a.boot)
    undefined = {(r["labels"], r["design"], r["patients"]): r["undefined"] for r in rows if r["undefined"]}
    if undefined:
        print(f"\ncohorts dropped, F1 undefined: {undefined}")
    print(f"\nCPU time {time.process_time() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
