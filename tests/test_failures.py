"""Failure analysis (ccgrade.evaluate.failures): which model is judged, the order of its errors, and error rates with
exact CIs checked against statsmodels' Clopper-Pearson interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from statsmodels.stats.proportion import proportion_confint

from ccgrade.evaluate import failures
from ccgrade.learn import models
from ccgrade.outputs import Outputs, write_npz, write_tsv


def cells_on_disk(tmp_path, n_folds=2):
    """Two fold cells of one model (and a second model that must be ignored): 20 test patients in all."""
    rng = np.random.default_rng(4)
    torch.manual_seed(0)
    cells, truth = [], {}
    for fold in range(n_folds):
        d = tmp_path / f"fold{fold}"
        d.mkdir()
        torch.save(models.build_model("resnet18", in_channels=1).state_dict(), d / "best.pt")
        rows = []
        for i in range(10):
            pid = f"P{fold}{i}"
            y = int(i % 2)
            p = float(np.clip(rng.uniform(0.05, 0.95), 0, 1))
            truth[pid] = (y, p)
            for k in range(2):  # two images per patient averaging to p
                rows.append({"patient_id": pid, "set": "test", "label": y, "prob_high": p + (0.01 if k else -0.01),
                             "source": "cmp", "slice_index": k})
            rows.append({"patient_id": f"T{fold}{i}", "set": "train", "label": y, "prob_high": 0.5, "source": "cmp",
                         "slice_index": 0})
        write_tsv(d / "predictions.tsv", pd.DataFrame(rows))
        cells.append({"arch": "resnet18", "roi": "box", "phases": "cmp", "variant": "base", "seed": 1, "fold": fold,
                      "dir": str(d), "hp": {"arch": "resnet18"}})
    other = {**cells[0], "arch": "resnet34", "dir": str(tmp_path / "nowhere")}
    return cells + [other], truth


def test_errors_rates_and_montage(tmp_path):
    cells, truth = cells_on_disk(tmp_path)
    assert failures.analysed_cells(cells) == cells[:2]  # the first model, every fold
    crops = []
    for pid in truth:
        f = tmp_path / "crops" / "box" / pid / "cmp.npz"
        write_npz(f, images=np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float16),
                  slice_index=np.array([4, 5, 6]), boxes=np.zeros((3, 4)), status="ok", reason="")
        crops.append(str(f))
    pids = sorted(truth)
    cohort = pd.DataFrame({"patient_id": pids, "tumor_size_cm": [3.0 + 0.4 * i for i in range(len(pids))],
                           "centre": ["A" if i % 3 else "B" for i in range(len(pids))],
                           "sex": ["M" if i % 2 else "F" for i in range(len(pids))]})
    cohort.loc[0, "tumor_size_cm"] = np.nan
    cohort["mask_max_diameter_3d_mm"] = 55.0  # fills the missing size: 5.5 cm
    phases = pd.DataFrame([{"patient_id": p, "phase": ph, "status": "ok" if (ph != "up" or i % 4) else "excluded"}
                           for i, p in enumerate(pids) for ph in ("up", "cmp", "np", "ep")])
    roles = {"failures": "f.csv", "failures_md": "f.md", "error_rates": "r.csv", "error_rates_md": "r.md",
             "failure_montage": "m.png", "failure_montage_pdf": "m.pdf"}
    out = Outputs({k: tmp_path / v for k, v in roles.items()})
    fail, rates = failures.analyse(cells, crops, cohort, phases, out, n=3)
    wrong = {p: (y, q) for p, (y, q) in truth.items() if int(q >= 0.5) != y}
    assert set(fail["patient_id"]) == set(wrong)
    conf = [abs(wrong[p][1] - 0.5) for p in fail["patient_id"]]
    assert conf == sorted(conf, reverse=True) and fail["prob_high"].tolist() == pytest.approx([wrong[p][1] for p in fail["patient_id"]])
    # error rates: every subgroup level counted by hand, CIs as statsmodels' Clopper-Pearson ("beta")
    allrow = rates[rates["subgroup"] == "all"].iloc[0]
    assert allrow["n"] == 20 and allrow["errors"] == len(wrong)
    lo, hi = proportion_confint(len(wrong), 20, alpha=0.05, method="beta")
    assert (allrow["ci_low"], allrow["ci_high"]) == pytest.approx((lo, hi), abs=1e-10)
    size = cohort.set_index("patient_id")["tumor_size_cm"].fillna(5.5)
    for level, (a, b) in {"<= 4 cm": (0, 4), "4-7 cm": (4, 7), "> 7 cm": (7, 99)}.items():
        members = [p for p in pids if a < size[p] <= b]
        r = rates[(rates["subgroup"] == "size band") & (rates["level"] == level)].iloc[0]
        k = sum(p in wrong for p in members)
        assert r["n"] == len(members) and r["errors"] == k
        want = proportion_confint(k, len(members), alpha=0.05, method="beta")
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.0 if k == 0 else want[0], 1.0 if k == len(members) else want[1]),
                                                          abs=1e-10)
    three = [p for i, p in enumerate(pids) if i % 4 == 0]
    r = rates[(rates["subgroup"] == "usable phases") & (rates["level"] == "3")].iloc[0]
    assert r["n"] == len(three) and r["errors"] == sum(p in wrong for p in three)
    assert set(rates["subgroup"]) == {"all", "size band", "centre", "sex", "usable phases"}
    assert out["failure_montage"].stat().st_size > 10_000 and out["failure_montage_pdf"].exists()
    assert "Clopper-Pearson" in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (3, 11), (1, 1)])
def test_exact_ci_is_clopper_pearson(k, n):
    lo, hi = failures.exact_ci(k, n)
    want = proportion_confint(k, n, alpha=0.05, method="beta")
    assert lo == pytest.approx(0.0 if k == 0 else want[0], abs=1e-12) and hi == pytest.approx(1.0 if k == n else want[1], abs=1e-12)
