import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ccgrade.errors import SplitError
from ccgrade.evaluate import baseline
from ccgrade.preprocess import splits
from conftest import repo_config


def cohort(n=158, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)],
                         "grade_group": np.where(rng.random(n) < 0.22, "high", "low"),
                         "centre": rng.choice(["A", "B", "C"], n)})


@pytest.mark.parametrize("scheme", [
    {"kind": "holdout", "fractions": {"train": 8, "val": 1, "test": 1}},
    {"kind": "holdout", "fractions": {"train": 7, "test": 3}},
    {"kind": "kfold", "k": 5},
    {"kind": "leave_one_centre_out"},
])
def test_splits_disjoint_complete_deterministic(scheme):
    c = cohort()
    folds = splits.make_split(c, scheme, seed=11)
    assert folds == splits.make_split(c, scheme, seed=11)
    for f in folds:
        sets = [set(v) for k, v in f.items() if k != "centre"]
        assert sum(map(len, sets)) == len(c) and len(set().union(*sets)) == len(c)
    if scheme["kind"] == "kfold":
        tests = [p for f in folds for p in f["test"]]
        assert sorted(tests) == sorted(c.patient_id)  # every patient tested exactly once
    if scheme["kind"] == "holdout":
        f = folds[0]
        tot = sum(scheme["fractions"].values())
        for name, share in scheme["fractions"].items():
            assert abs(len(f[name]) - len(c) * share / tot) <= 1.0
            # stratified: the high-grade share of each set is within one patient of the cohort's
            hi = c.set_index("patient_id").loc[f[name], "grade_group"].eq("high").sum()
            assert abs(hi - (c.grade_group == "high").sum() * share / tot) <= 2.0
    assert splits.make_split(c, scheme, seed=12) != folds or scheme["kind"] == "leave_one_centre_out"


def test_cui_counts_8_1_1_on_158():
    c = pd.DataFrame({"patient_id": [f"P{i}" for i in range(158)], "grade_group": ["low"] * 124 + ["high"] * 34})
    f = splits.make_split(c, {"kind": "holdout", "fractions": {"train": 8, "val": 1, "test": 1}, "stratify": ["grade_group"]}, 1)[0]
    g = c.set_index("patient_id")["grade_group"]
    counts = {k: (int((g[v] == "low").sum()), int((g[v] == "high").sum())) for k, v in f.items()}
    # Cui et al.: 99/27 train, 12/4 val, 12/4 test (126/16/16); dealing gives within one patient of 8:1:1
    assert counts["train"][0] + counts["train"][1] in (126, 127)
    assert all(abs(counts[s][0] - 12.4) <= 1 and abs(counts[s][1] - 3.4) <= 1 for s in ("val", "test"))


def test_overlap_is_refused():
    with pytest.raises(SplitError, match="patient P1"):
        splits.check_disjoint([{"train": ["P1", "P2"], "test": ["P1"]}])
    with pytest.raises(SplitError, match="not assigned"):
        splits.check_disjoint([{"train": ["P1"], "test": ["P2"]}], {"P1", "P2", "P3"})


def test_eligibility_lists_excluded_patients():
    c = cohort(5)
    ph = pd.DataFrame({"patient_id": ["P000", "P000", "P001"], "phase": ["up", "cmp", "up"],
                       "status": ["ok", "excluded", "ok"], "reason": ["", "missing", ""]})
    ph = pd.concat([ph, pd.DataFrame({"patient_id": ["P002", "P002", "P003", "P003"], "phase": ["up", "cmp"] * 2,
                                      "status": "ok", "reason": ""})])
    elig, excl = splits.eligible_patients(c, [ph], ["up", "cmp"])
    assert set(elig.patient_id) == {"P002", "P003"}  # P001 lacks cmp's row, P004 has no images at all
    e = excl.set_index("patient_id")["reason"]
    assert "cmp" in e["P000"] and e["P004"] == "not in splits: no images" and set(e.index) == {"P000", "P001", "P004"}
    # mask-only cohorts require no phase: nobody is excluded for lacking images
    elig, excl = splits.eligible_patients(c, [], [])
    assert len(elig) == 5 and excl.empty


# --- Cui et al. Table 2 and Li et al. Table 1 from their published summaries -----------------------

def p_range_under_rounding(m1, s1, n1, m2, s2, n2, half=0.005):
    ps = [baseline.ttest_from_stats(m1 + a, s1 + b, n1, m2 + c, s2 + d, n2)[1]
          for a in (-half, half) for b in (-half, half) for c in (-half, half) for d in (-half, half)]
    return min(ps), max(ps)


@pytest.mark.parametrize("table, paper_p", [
    ([[61, 63], [21, 13]], 0.194),   # tumour side
    ([[72, 52], [23, 11]], 0.312),   # hypertension
    ([[28, 96], [9, 25]], 0.635),    # diabetes
])
def test_cui_table2_chi_square_matches(table, paper_p):
    _, p = baseline.chi2_test(np.array(table).T, correction=False)
    assert round(p, 3) == paper_p


def test_cui_table2_gender_is_internally_inconsistent():
    # 81/43 vs 25/9 gives 0.367 (Pearson), 0.486 (Yates), 0.416 (Fisher), 0.360 (G-test): none is the printed 0.364
    t = np.array([[81, 25], [43, 9]])
    ps = [baseline.chi2_test(t)[1], baseline.chi2_test(t, True)[1], stats.fisher_exact(t).pvalue,
          stats.chi2_contingency(t, correction=False, lambda_="log-likelihood").pvalue]
    assert round(ps[0], 3) == 0.367 and all(round(p, 3) != 0.364 for p in ps)


@pytest.mark.parametrize("summ, paper_p, exact", [
    ((57.52, 8.95, 124, 58.94, 10.36, 34), 0.431, False),  # age: 0.430 at the printed values, 0.431 within rounding
    ((25.84, 3.50, 124, 25.40, 3.63, 34), 0.514, False),   # BMI: 0.520 printed values, 0.514 within rounding
    ((4.30, 2.02, 124, 7.09, 9.79, 34), 0.003, True),      # tumour size: Student's t (Welch would give 0.108)
])
def test_cui_table2_t_tests(summ, paper_p, exact):
    _, p = baseline.ttest_from_stats(*summ)
    lo, hi = p_range_under_rounding(*summ)
    assert lo - 5e-4 <= paper_p <= hi + 5e-4
    if exact:
        assert round(p, 3) == paper_p
    assert baseline.ttest_from_stats(*summ, welch=True)[1] != pytest.approx(p)


def test_li_table1_from_summaries():
    t, p = baseline.ttest_from_stats(58.2, 11.6, 214, 55.5, 12.6, 92)
    assert abs(t - 1.833) < 0.02 and abs(p - 0.068) <= 0.002
    assert round(baseline.chi2_test(np.array([[139, 53], [75, 39]]))[1], 3) == 0.223   # sex
    assert round(baseline.chi2_test(np.array([[90, 33], [124, 59]]))[1], 3) == 0.311   # size <= 4 cm
    assert round(baseline.chi2_test(np.array([[100, 41], [114, 51]]))[1], 3) == 0.728  # grade


def test_baseline_table_chooses_tests_and_matches_scipy():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": ["low"] * 80 + ["high"] * 30,
                       "age": np.r_[rng.normal(57, 9, 80), rng.normal(60, 10, 30)],
                       "size": np.r_[rng.lognormal(1.3, 0.6, 80), rng.lognormal(1.8, 0.7, 30)] ** 2,
                       "sex": rng.choice(["M", "F"], 110), "rare": ["a"] * 106 + ["b"] * 4})
    opt = repo_config()["baseline"]
    variables = [{"name": "age", "type": "continuous"}, {"name": "size", "type": "continuous"},
                 {"name": "sex", "type": "categorical"}, {"name": "rare", "type": "categorical"}]
    t, notes = baseline.baseline_table(df, "g", ("low", "high"), variables, opt)
    r = t.set_index("variable_name")
    lo, hi = df[df.g == "low"], df[df.g == "high"]
    age = r.loc["age"]
    assert age["test"] == "student" and age["p_value"] == pytest.approx(stats.ttest_ind(lo.age, hi.age).pvalue)
    size = r.loc["size"]
    assert size["test"] == "mwu"  # squared log-normal: not normal
    assert size["p_value"] == pytest.approx(stats.mannwhitneyu(lo["size"], hi["size"]).pvalue)
    sex = t[(t.variable_name == "sex") & (t.test != "")].iloc[0]
    tab = pd.crosstab(df.sex, df.g)[["low", "high"]].to_numpy()
    assert sex["test"] == "chi2" and sex["p_value"] == pytest.approx(stats.chi2_contingency(tab, correction=False).pvalue)
    rare = t[(t.variable_name == "rare") & (t.test != "")].iloc[0]
    assert rare["test"] == "fisher"
    assert any("Fisher" in n and "rare" in n for n in notes) and any("Mann-Whitney" in n for n in notes)


def test_lilliefors_default_catches_skew_that_the_uncorrected_ks_lets_pass():
    """SPSS's K-S normality test (Explore/EXAMINE) carries the Lilliefors correction: estimating the mean and
    SD from the sample makes the plain K-S test far too lenient. A log-normal variable passes it here and
    would get a t-test; the default (lilliefors) sends it to Mann-Whitney, and the footnote names the row."""
    from statsmodels.stats.diagnostic import lilliefors
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": ["low"] * 40 + ["high"] * 25,
                       "volume": np.r_[rng.lognormal(1.0, 0.5, 40), rng.lognormal(1.2, 0.5, 25)],
                       "age": np.r_[rng.normal(57, 9, 40), rng.normal(62, 9, 25)],
                       "sex": rng.choice(["M", "F"], 65)})
    low = df.loc[df.g == "low", "volume"]
    assert stats.kstest(low, "norm", args=(low.mean(), low.std(ddof=1))).pvalue > 0.05  # plain K-S: "normal"
    assert lilliefors(low, dist="norm", pvalmethod="table")[1] < 0.05  # Lilliefors: not normal
    variables = [{"name": "volume", "label": "Tumour volume", "type": "continuous"},
                 {"name": "age", "label": "Age", "type": "continuous"}, {"name": "sex", "type": "categorical"}]
    opt = repo_config()["baseline"]
    assert opt["normality"] == "lilliefors"
    t, notes = baseline.baseline_table(df, "g", ("low", "high"), variables, {**opt, "adjust": ["holm", "bh"]})
    r = t.set_index("variable_name")
    assert r.loc["volume", "test"] == "mwu"
    t_ks, notes_ks = baseline.baseline_table(df, "g", ("low", "high"), variables, {**opt, "normality": "ks"})
    assert t_ks.set_index("variable_name").loc["volume", "test"] == "student"
    assert any("would change test" in n and "Tumour volume" in n for n in notes)
    assert any("Lilliefors correction" in n and "SPSS" in n for n in notes)
    tested = t[t["p_value"].notna()]
    np.testing.assert_allclose(tested["p_holm"], multipletests(tested["p_value"], method="holm")[1], atol=1e-15)
    np.testing.assert_allclose(tested["p_bh"], multipletests(tested["p_value"], method="fdr_bh")[1], atol=1e-15)
    assert any("family is this table's 3 variable tests" in n for n in notes)


def test_monte_carlo_test_for_small_rxc():
    a = np.array(["x"] * 10 + ["y"] * 2 + ["z"] * 1)
    b = np.array(["x"] * 3 + ["y"] * 6 + ["z"] * 3)
    s, p = baseline.monte_carlo_chi2(a, b, seed=1, draws=4000)
    assert s == pytest.approx(stats.chi2_contingency(pd.crosstab(np.r_[a, b], np.r_[[0] * 13, [1] * 12])).statistic)
    assert 0.005 < p < 0.05 and baseline.monte_carlo_chi2(a, b, seed=1, draws=4000)[1] == p


def test_tiny_groups_get_no_normality_p_and_the_rank_test():
    """Lilliefors needs four values (statsmodels' table; SPSS prints none below that): a group of three gets
    no normality P, so the row falls back to Mann-Whitney instead of failing the job."""
    assert np.isnan(baseline.normality_p(np.array([1.0, 2.0, 4.0]), "lilliefors"))
    df = pd.DataFrame({"g": ["low"] * 3 + ["high"] * 5, "age": [50.0, 61, 70, 55, 58, 66, 71, 80]})
    t, _ = baseline.baseline_table(df, "g", ("low", "high"), [{"name": "age", "type": "continuous"}],
                                   repo_config()["baseline"])
    assert t.iloc[0]["test"] == "mwu" and t.iloc[0]["p_value"] == pytest.approx(
        stats.mannwhitneyu([50.0, 61, 70], [55.0, 58, 66, 71, 80]).pvalue)
