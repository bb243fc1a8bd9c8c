"""Baseline characteristics tables (Cui Table 2: low vs high grade; Li Table 1: training vs testing).

Continuous variables: normality per group (default Lilliefors: the Kolmogorov-Smirnov test with the
Lilliefors correction that SPSS's Explore/EXAMINE and NPTESTS run, as Cui et al. used SPSS 26; the
uncorrected K-S and Shapiro-Wilk as options; the footnote names the rows another K-S variant would test
differently); normal in both groups -> mean +/- SD with Student's (or Welch's) t-test, otherwise
median (IQR) with Mann-Whitney U. Categorical variables: n (%) with Pearson's chi-square (continuity
correction optional), or Fisher's exact test when an expected count is below the threshold (2x2), or a
seeded Monte Carlo permutation test of the chi-square statistic for larger tables. The footnote names
the test of every row. The variables' P values are one family: Holm-adjusted (and Benjamini-Hochberg
when asked) beside the raw ones.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.diagnostic import lilliefors

from ccgrade import stats as ccstats
from ccgrade.config.cohort import cohort_label, validate_cohort
from ccgrade.outputs import read_table, write_table

TEST_NAMES = {
    "student": "Student's t-test", "welch": "Welch's t-test", "mwu": "Mann-Whitney U test",
    "chi2": "Pearson's chi-square test", "chi2_yates": "chi-square test with Yates' continuity correction",
    "fisher": "Fisher's exact test", "mc": "Monte Carlo permutation chi-square test (10,000 draws, seeded)",
}


NORMALITY_NAMES = {"ks": "the Kolmogorov-Smirnov test without correction (against a normal with the sample's mean "
                         "and SD)",
                   "lilliefors": "the Kolmogorov-Smirnov test with the Lilliefors correction (as SPSS's Explore / "
                                 "EXAMINE and NPTESTS)",
                   "shapiro": "the Shapiro-Wilk test"}


def is_normal(a: np.ndarray, b: np.ndarray, method: str, alpha: float) -> bool:
    """Both groups pass ``method``'s normality test at ``alpha``."""
    return normality_p(a, method) >= alpha and normality_p(b, method) >= alpha


def normality_p(x: np.ndarray, method: str) -> float:
    """P value of a normality test: 'ks' (K-S against a normal with the sample's mean and SD), 'lilliefors', 'shapiro'."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) < 3 or np.std(x) == 0:
        return float("nan")
    if method == "ks":
        return float(stats.kstest(x, "norm", args=(x.mean(), x.std(ddof=1))).pvalue)
    if method == "lilliefors":  # statsmodels' table needs four values (SPSS prints no P below that either)
        return float(lilliefors(x, dist="norm", pvalmethod="table")[1]) if len(x) >= 4 else float("nan")
    return float(stats.shapiro(x).pvalue)


def ttest_from_stats(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int, welch: bool = False) -> tuple[float, float]:
    """Two-sample t statistic and P from summary statistics (as in a paper's table)."""
    r = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=not welch)
    return float(r.statistic), float(r.pvalue)


def chi2_test(table: np.ndarray, correction: bool = False) -> tuple[float, float]:
    """Pearson chi-square statistic and P of a contingency table (Yates' correction optional, 2x2 only)."""
    r = stats.chi2_contingency(np.asarray(table), correction=correction)
    return float(r.statistic), float(r.pvalue)


def monte_carlo_chi2(a: np.ndarray, b: np.ndarray, seed: int = 0, draws: int = 10_000) -> tuple[float, float]:
    """Permutation P of the chi-square statistic for small expected counts in r x 2 tables."""
    labels = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
    values = np.concatenate([a, b])
    cats = {v: i for i, v in enumerate(sorted(set(values)))}
    codes = np.array([cats[v] for v in values])

    def stat(lab: np.ndarray) -> float:
        t = np.zeros((len(cats), 2))
        np.add.at(t, (codes, lab), 1)
        e = t.sum(1, keepdims=True) * t.sum(0, keepdims=True) / t.sum()
        return float(((t - e) ** 2 / np.where(e > 0, e, 1)).sum())

    obs = stat(labels)
    rng = np.random.default_rng(seed)
    hits = sum(stat(rng.permutation(labels)) >= obs - 1e-12 for _ in range(draws))
    return obs, (hits + 1) / (draws + 1)


def fmt_p(p: float) -> str:
    """P value as printed in the tables: '<0.001' or three decimals."""
    if not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def continuous_row(name: str, label: str, a: np.ndarray, b: np.ndarray, opt: dict) -> dict:
    """One row for a continuous variable: summary per group, test, statistic, P."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:  # too few values in a group to test: describe only
        d = lambda x: f"{x.mean():.2f} (n={len(x)})" if len(x) else "–"  # noqa: E731
        return {"variable": label, "level": "", "group1": d(a), "group2": d(b), "summary": "mean", "test": "",
                "statistic": np.nan, "p_value": np.nan, "normality_p": "", "variable_name": name}
    pa, pb = normality_p(a, opt["normality"]), normality_p(b, opt["normality"])
    normal = pa >= opt["alpha_normality"] and pb >= opt["alpha_normality"]
    if normal:
        test = opt["ttest"]
        r = stats.ttest_ind(a, b, equal_var=test == "student")
        s1, s2 = f"{a.mean():.2f} ± {a.std(ddof=1):.2f}", f"{b.mean():.2f} ± {b.std(ddof=1):.2f}"
        summary = "mean ± SD"
    else:
        test = "mwu"
        r = stats.mannwhitneyu(a, b, alternative="two-sided")
        q = lambda x: f"{np.median(x):.2f} ({np.percentile(x, 25):.2f}–{np.percentile(x, 75):.2f})"  # noqa: E731
        s1, s2, summary = q(a), q(b), "median (IQR)"
    return {"variable": label, "level": "", "group1": s1, "group2": s2, "summary": summary, "test": test,
            "statistic": float(r.statistic), "p_value": float(r.pvalue),
            "normality_p": f"{pa:.3f}/{pb:.3f}", "variable_name": name}


def categorical_rows(name: str, label: str, a: pd.Series, b: pd.Series, opt: dict, seed: int = 0) -> list[dict]:
    """Header row with the test plus one row per level with n (%)."""
    a, b = a.dropna().astype(str), b.dropna().astype(str)
    levels = sorted(set(a) | set(b))
    table = np.array([[int((a == lv).sum()), int((b == lv).sum())] for lv in levels])
    if len(levels) < 2:
        stat, p, test = np.nan, np.nan, "chi2"
    else:
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        small = (expected < opt["fisher_below"]).any()
        if small and table.shape == (2, 2):
            res = stats.fisher_exact(table)
            stat, p, test = float(res.statistic), float(res.pvalue), "fisher"
        elif small:
            stat, p = monte_carlo_chi2(a.to_numpy(), b.to_numpy(), seed)
            test = "mc"
        else:
            corr = opt["chi2_correction"] and table.shape == (2, 2)
            stat, p = chi2_test(table, corr)
            test = "chi2_yates" if corr else "chi2"
    rows = [{"variable": label, "level": "", "group1": "", "group2": "", "summary": "n (%)", "test": test,
             "statistic": stat, "p_value": p, "normality_p": "", "variable_name": name}]
    for lv, (x, y) in zip(levels, table):
        rows.append({"variable": "", "level": lv, "group1": f"{x} ({100 * x / max(len(a), 1):.1f}%)",
                     "group2": f"{y} ({100 * y / max(len(b), 1):.1f}%)", "summary": "", "test": "",
                     "statistic": np.nan, "p_value": np.nan, "normality_p": "", "variable_name": name})
    return rows


def baseline_table(df: pd.DataFrame, group_col: str, groups: tuple[str, str], variables: list[dict], opt: dict,
                   seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """The comparison table of ``groups`` (values of ``group_col``) and its footnotes."""
    ga, gb = (df[df[group_col] == g] for g in groups)
    rows = []
    present = [v for v in variables if v["name"] in df.columns]
    if not present:  # no clinical variable: the grade counts, described, and a note saying why
        rows = categorical_rows("grade", "Grade", ga["grade"], gb["grade"], opt, seed)
        for r in rows:
            r.update(test="", statistic=np.nan, p_value=np.nan)
        t = pd.DataFrame(rows).rename(columns={"group1": f"{groups[0]} (n={len(ga)})", "group2": f"{groups[1]} (n={len(gb)})"})
        return t, [f"Groups: {groups[0]} (n={len(ga)}) vs {groups[1]} (n={len(gb)}).",
                   "No clinical variable to compare: baseline.variables names no column the cohort has; the grade "
                   "counts are shown (not tested)."]
    for v in present:
        label = v.get("label", v["name"]) + (f" ({v['unit']})" if v.get("unit") else "")
        if v["type"] == "continuous":
            rows.append(continuous_row(v["name"], label, ga[v["name"]], gb[v["name"]], opt))
        else:
            rows += categorical_rows(v["name"], label, ga[v["name"]], gb[v["name"]], opt, seed)
    t = pd.DataFrame(rows)
    adjusts = opt.get("adjust") or ["holm"]
    for m in adjusts:
        t[f"p_{m}"] = ccstats.adjust(t["p_value"].to_numpy(float), m)
    used = [x for x in dict.fromkeys(t["test"]) if x]
    notes = [f"Groups: {groups[0]} (n={len(ga)}) vs {groups[1]} (n={len(gb)})."]
    notes += [f"{TEST_NAMES[x]}: " + ", ".join(t.loc[t['test'] == x, 'variable']) + "." for x in used]
    notes.append(f"Normality by {NORMALITY_NAMES[opt['normality']]} per group (alpha {opt['alpha_normality']}); "
                 "normality_p lists both groups' P.")
    other = {"lilliefors": "ks", "ks": "lilliefors"}.get(opt["normality"])
    if other:
        flips = [v.get("label", v["name"]) for v in present if v["type"] == "continuous" and
                 len(ga[v["name"]].dropna()) > 2 and len(gb[v["name"]].dropna()) > 2 and
                 is_normal(ga[v["name"]], gb[v["name"]], other, opt["alpha_normality"]) !=
                 is_normal(ga[v["name"]], gb[v["name"]], opt["normality"], opt["alpha_normality"])]
        notes.append(f"With {'the uncorrected' if other == 'ks' else 'the Lilliefors-corrected'} K-S test instead, "
                     + (f"these rows would change test (t-test vs Mann-Whitney): {', '.join(flips)}." if flips else
                        "no row would change test."))
    k = int(t["p_value"].notna().sum())
    notes.append(f"Multiplicity: the family is this table's {k} variable test{'s' if k != 1 else ''}; "
                 + " and ".join(ccstats.ADJUST_NAMES[m] for m in adjusts)
                 + "-adjusted P values beside the raw ones (" + ", ".join(f"p_{m}" for m in adjusts) + ").")
    missing = {v["name"]: int(df[v["name"]].isna().sum()) for v in variables if v["name"] in df and df[v["name"]].isna().any()}
    if missing:
        notes.append("Missing values excluded per variable: " + ", ".join(f"{k} {n}" for k, n in missing.items()) + ".")
    t = t.rename(columns={"group1": f"{groups[0]} (n={len(ga)})", "group2": f"{groups[1]} (n={len(gb)})"})
    return t, notes


def _markdown_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t.drop(columns=["variable_name", "normality_p", "summary"]).copy()
    v["statistic"] = [f"{s:.3f}" if np.isfinite(s) else "" for s in v["statistic"]]
    v["P"] = [fmt_p(p) for p in v["p_value"]]
    adj = [c for c in v.columns if c.startswith("p_") and c != "p_value"]
    for c in adj:
        v[f"P ({ {'p_holm': 'Holm', 'p_bh': 'BH'}.get(c, c)})"] = [fmt_p(p) for p in v[c]]
    v["test"] = [TEST_NAMES.get(x, "") for x in v["test"]]
    return v.drop(columns=["p_value"] + adj)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a baseline characteristics table (CSV + Markdown).")
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--split", required=True, help="split TSV whose fold-0 patients form the analysed cohort")
    ap.add_argument("--config", required=True, help="JSON: {cohort, baseline, seed}")
    ap.add_argument("--by", choices=["grade", "split"], required=True)
    ap.add_argument("--out", required=True, help="the CSV to write")
    ap.add_argument("--md", help="the Markdown to write (default: beside the CSV)")
    a = ap.parse_args(argv)
    cfg = json.loads(a.config)
    cohort = validate_cohort(read_table(a.cohort), cfg, file=a.cohort,
                             check_paths=False)
    split = read_table(a.split)
    split = split[split["fold"] == 0][["patient_id", "set"]]
    df = cohort.merge(split, on="patient_id", how="inner")
    opt, variables = cfg["baseline"], list(cfg["baseline"]["variables"])
    if a.by == "grade":
        t, notes = baseline_table(df, "grade_group", ("low", "high"), variables, opt, cfg["seed"])
        title = f"Clinical characteristics of {len(df)} patients with low- and high-grade {cohort_label(cfg)}"
    else:
        df["set"] = df["set"].replace({"val": "train"})
        variables.append({"name": "grade_group", "label": "Grade group", "type": "categorical"})
        t, notes = baseline_table(df, "set", ("train", "test"), variables, opt, cfg["seed"])
        title = f"Patient characteristics in the training and testing sets ({len(df)} patients)"
    lost = cfg["baseline"].get("missing_variables") or []
    if lost:
        notes.append(f"Left out, not in the cohort: {', '.join(lost)} (named in baseline.variables).")
    md = _markdown_view(t)
    write_table(a.out, t, footnotes=notes, title=title, markdown=md, md=a.md)
    print(md.to_string())


if __name__ == "__main__":
    main()
