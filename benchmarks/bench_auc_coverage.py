"""Benchmark (prints tables; not a test): coverage of AUC intervals and size of paired AUC tests at small n.

Usage: .venv/bin/python benchmarks/bench_auc_coverage.py [--cohorts 500] [--boot 500] [--perm 2000]
       [--sizes 16 20 40 100] [--only coverage|size] [--json F]

Simulated test sets of 16, 20, 40 and 100 patients, 40% positive (6/10, 8/12, 16/24, 40/60), binormal scores
with unit variances and true AUC 0.75 or 0.90 (Phi(d / sqrt 2), d the positives' mean shift):

- unclustered: one score per patient;
- clustered: 3-8 images per patient (uniform), score = class mean + patient effect + image noise, both normal,
  intraclass correlation 0.5, total variance 1; the true image-level AUC is then Phi(d / sqrt 2) again
  (a positive and a negative image always come from different patients), which a 4-million-pair Monte Carlo
  sample confirms once at the start.

For each design, size and AUC, ``--cohorts`` cohorts (fixed seeds) and every interval method of
``ccgrade.stats.AUC_INTERVALS``: coverage of the true AUC, mean width, and the share of intervals of zero
width (and of samples with AUC 0 or 1); the bootstrap (bca) draws ``--boot`` patient-level resamples (500
here against 2,000 in the pipeline: that only adds Monte Carlo error to its quantiles). Then the rejection
rate at alpha 0.05 of the paired comparison of two correlated models (correlation 0.5 between the models'
scores, patient effects and image noise alike): DeLong's z test (``delong_test``) and the within-patient
permutation test (``paired_auc_test``, ``--perm`` random swaps) of ranks (the default) and of raw scores; size
under two nulls with EQUAL true AUC 0.75 -- the same model twice (exchangeable scores) and the two models on
different scales (model A's latent score through expit(3 x), B's through expit(x): equal AUCs, not
exchangeable) -- and power at AUC 0.75 against 0.90 on one scale.

With 500 cohorts the Monte Carlo SE of a coverage of 0.95 is 0.010, of a size of 0.05 also 0.010. About
2.5 CPU-minutes at the defaults (most of it the bootstrap arm).
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

from ccgrade import stats  # noqa: E402

SIZES = (16, 20, 40, 100)
AUCS = (0.75, 0.90)
ICC, RHO_MODELS = 0.5, 0.5
LABELS = {"wald": "wald (DeLong/Obuchowski)", "logit": "logit", "score": "score (Newcombe's V)",
          "score_hm": "score_hm (Hanley-McNeil V)", "bca": "bca (patient bootstrap)"}
TESTS = {"delong": {"method": "delong"}, "permutation (ranks)": {"method": "permutation", "swap": "ranks"},
         "permutation (scores)": {"method": "permutation", "swap": "scores"}}


def shift(auc: float) -> float:
    """The positives' mean shift d giving a binormal AUC Phi(d / sqrt 2) with unit variances."""
    return float(np.sqrt(2) * sps.norm.ppf(auc))


def labels(n: int) -> np.ndarray:
    n_pos = int(round(0.4 * n))
    return np.r_[np.ones(n_pos, int), np.zeros(n - n_pos, int)]


def cohort(rng: np.random.Generator, n: int, d: float, clustered: bool, models: int = 1, rho: float = 0.0):
    """Labels (units), ``models`` latent score rows (models, units) with between-model correlation ``rho``, and
    the patient of each unit (None unclustered)."""
    yp = labels(n)
    if not clustered:
        z = rng.standard_normal((models, n))
        if models == 2:
            z[1] = rho * z[0] + np.sqrt(1 - rho ** 2) * z[1]
        return yp, d * yp + z, None
    k = rng.integers(3, 9, n)
    pid = np.repeat(np.arange(n), k)
    u = rng.standard_normal((models, n))
    e = rng.standard_normal((models, len(pid)))
    if models == 2:
        u[1] = rho * u[0] + np.sqrt(1 - rho ** 2) * u[1]
        e[1] = rho * e[0] + np.sqrt(1 - rho ** 2) * e[1]
    s = d * yp[pid] + np.sqrt(ICC) * u[:, pid] + np.sqrt(1 - ICC) * e
    return yp[pid], s, pid


def monte_carlo_auc(d: float, rng: np.random.Generator, pairs: int = 4_000_000) -> float:
    """The clustered design's image-level AUC by simulation: a positive and a negative image of different
    patients, each image = class mean + its patient's effect + noise."""
    pos = d + np.sqrt(ICC) * rng.standard_normal(pairs) + np.sqrt(1 - ICC) * rng.standard_normal(pairs)
    neg = np.sqrt(ICC) * rng.standard_normal(pairs) + np.sqrt(1 - ICC) * rng.standard_normal(pairs)
    return float(np.mean(pos > neg))


def coverage(cohorts: int, n_boot: int, seed: int, sizes=SIZES) -> list[dict]:
    rows = []
    for ci, clustered in enumerate((False, True)):
        for n in sizes:
            for ai, auc in enumerate(AUCS):
                rng = np.random.default_rng([seed, ci, n, ai])
                d = shift(auc)
                res = {m: [] for m in stats.AUC_INTERVALS}
                ones = 0
                for r in range(cohorts):
                    y, s, pid = cohort(rng, n, d, clustered)
                    for m in res:
                        a, lo, hi = stats.auc_interval(y, s[0], pid, method=m, n_boot=n_boot, seed=r)
                        res[m].append((lo <= auc <= hi, hi - lo, hi - lo <= 1e-12))
                    ones += a in (0.0, 1.0)
                for m, v in res.items():
                    v = np.array(v, float)
                    label = LABELS.get(m, m) + (", default" if m == stats.AUC_INTERVAL_DEFAULT else "")
                    rows.append({"design": "clustered" if clustered else "unclustered", "patients": n, "auc": auc,
                                 "method": label, "coverage": v[:, 0].mean(), "width": v[:, 1].mean(),
                                 "zero_width": v[:, 2].mean(), "auc_0_or_1": ones / cohorts})
    return rows


NULLS = ("same model twice", "different scales", "power: 0.75 vs 0.90")


def paired_scores(rng: np.random.Generator, n: int, clustered: bool, scenario: str):
    """Two correlated models' scores on one cohort: equal true AUC 0.75 (on one scale, or model A's score
    through expit(3 x) and B's through expit(x)), or AUC 0.75 against 0.90 for the power row."""
    d = shift(0.75)
    y, s, pid = cohort(rng, n, d, clustered, models=2, rho=RHO_MODELS)
    if scenario == "different scales":
        s = np.vstack([1 / (1 + np.exp(-3 * s[0])), 1 / (1 + np.exp(-s[1]))])
    elif scenario.startswith("power"):
        s[1] = s[1] + (shift(0.90) - d) * y
    return y, s, pid


def size(cohorts: int, n_perm: int, seed: int, sizes=SIZES) -> list[dict]:
    rows = []
    for ci, clustered in enumerate((False, True)):
        for n in sizes:
            for si, scen in enumerate(NULLS):
                rng = np.random.default_rng([seed, 7, ci, n, si])
                rej = dict.fromkeys(TESTS, 0)
                for r in range(cohorts):
                    y, s, pid = paired_scores(rng, n, clustered, scen)
                    for m, kw in TESTS.items():
                        p = stats.paired_auc_test(y, s[0], s[1], pid, n_perm=n_perm, seed=r, **kw)["p_value"]
                        rej[m] += p <= 0.05
                rows.append({"design": "clustered" if clustered else "unclustered", "patients": n, "null": scen,
                             **{m: v / cohorts for m, v in rej.items()}})
    return rows


def print_tables(cov: list[dict], sz: list[dict], cohorts: int) -> None:
    if cov:
        print(f"\n{cohorts} cohorts per cell; coverage of the true AUC (nominal 0.95), mean width, zero-width share\n")
        print("| design | patients | AUC | method | coverage | mean width | zero width | sample AUC 0/1 |")
        print("|---|---|---|---|---|---|---|---|")
        for r in cov:
            print(f"| {r['design']} | {r['patients']} | {r['auc']:.2f} | {r['method']} | {r['coverage']:.3f} | "
                  f"{r['width']:.3f} | {r['zero_width']:.3f} | {r['auc_0_or_1']:.3f} |")
    if sz:
        print(f"\nrejections at alpha 0.05 of the paired test ({cohorts} cohorts per cell): size under two nulls"
              f" with equal true AUC 0.75, power at 0.75 vs 0.90; default: {stats.PAIRED_TEST_DEFAULT} of ranks\n")
        print("| design | patients | scenario | " + " | ".join(TESTS) + " |")
        print("|---|---|---|" + "---|" * len(TESTS))
        for r in sz:
            print(f"| {r['design']} | {r['patients']} | {r['null']} | "
                  + " | ".join(f"{r[m]:.3f}" for m in TESTS) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohorts", type=int, default=500)
    ap.add_argument("--boot", type=int, default=500, help="bootstrap resamples of the bca arm")
    ap.add_argument("--perm", type=int, default=2000, help="random swaps of the permutation test")
    ap.add_argument("--seed", type=int, default=2029)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="patients per test set")
    ap.add_argument("--only", choices=("coverage", "size"), help="run one of the two parts")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    t0 = time.process_time()
    mc = {auc: monte_carlo_auc(shift(auc), np.random.default_rng([a.seed, 99, i])) for i, auc in enumerate(AUCS)}
    print("clustered design, image-level AUC: analytic vs 4e6-pair Monte Carlo: "
          + ", ".join(f"{auc:.4f} vs {v:.4f}" for auc, v in mc.items()))
    cov = coverage(a.cohorts, a.boot, a.seed, a.sizes) if a.only != "size" else []
    sz = size(a.cohorts, a.perm, a.seed, a.sizes) if a.only != "coverage" else []
    print_tables(cov, sz, a.cohorts)
    print(f"\nCPU time {time.process_time() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps({"coverage": cov, "size": sz, "monte_carlo_auc": mc}, indent=1))


if __name__ == "__main__":
    main()
