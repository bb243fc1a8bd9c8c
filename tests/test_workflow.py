"""Integration: the Snakemake DAG on a tiny demo cohort (marked slow; run by .ci/run)."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, tiny_config

pytestmark = pytest.mark.slow


def copy_of_repository(dst):
    """The workflow's own files (Snakefile, config, workflow/ with the ccgrade package, envs/ its rules name): a code-change test
    edits the copy, never this checkout (jobs import the package of the Snakefile's checkout)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dst / "Snakefile")
    shutil.copy2(REPO / "config.yaml", dst / "config.yaml")
    for d in ("workflow", "config", "envs"):
        shutil.copytree(REPO / d, dst / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dst


SNAKEFILE = {"path": REPO / "Snakefile"}


def smk(workdir, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE["path"]), "-d", str(workdir), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if check and r.returncode:
        raise AssertionError(f"snakemake failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def planned_jobs(out: str) -> set[tuple[str, str]]:
    """(rule, wildcards) pairs of a dry run."""
    jobs, rule = set(), None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            jobs.add((rule, ""))
        m = re.match(r"^\s*wildcards: (.*)$", line)
        if m and rule:
            jobs.discard((rule, ""))
            jobs.add((rule, m.group(1).strip()))
    return jobs


def planned_with(workdir, cfg) -> set[tuple[str, str]]:
    """The jobs a dry run plans under an edited config (the study's own config is restored after)."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    try:
        return planned_jobs((lambda r: r.stdout + r.stderr)(smk(workdir, "-n", "--cores", "2")))
    finally:
        (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    SNAKEFILE["path"] = copy_of_repository(tmp_path_factory.mktemp("repo")) / "Snakefile"
    wd = tmp_path_factory.mktemp("study")
    (wd / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    t = time.time()
    smk(wd, "--cores", "2", "--resources", "gpu=1", "-q")
    print(f"tiny demo study: {time.time() - t:.0f} s")
    return wd


def test_demo_study_outputs(study):
    for stem in ("baseline_low_vs_high", "baseline_train_vs_test_li", "exclusions"):
        assert (study / f"results/tables/{stem}.csv").stat().st_size > 0
        assert (study / f"results/tables/{stem}.md").read_text().startswith("**")
    for ext in ("png", "pdf"):
        assert (study / f"results/figures/roi_montage/DEMO001.{ext}").stat().st_size > 1000
    man = pd.read_csv(study / "results/crops/manifest.tsv", sep="\t")
    assert (man["status"] == "ok").all()
    # only the crops some model or figure reads: box (Cui's phases, the montage, Sun's stack), tumor and box5mm
    # (Sun's stack), centroid (Dai's cmp), cube and slice (Li's up, cmp, np); the others are empty placeholders
    made = man.groupby("roi")["phase"].agg(lambda p: sorted(set(p))).to_dict()
    assert made == {"box": sorted(["up", "cmp", "np", "ep", "stack"]), "tumor": ["stack"], "box5mm": ["stack"],
                    "centroid": ["cmp"], "cube": sorted(["up", "cmp", "np"]), "slice": sorted(["up", "cmp", "np"])}
    assert len(man) == 6 * sum(len(v) for v in made.values())
    skipped = np.load(study / "results/crops/cube/DEMO001/ep.npz")
    assert str(skipped["status"]) == "skipped" and skipped["images"].size == 0
    geo = pd.read_csv(study / "results/tables/tumour_geometry.csv")
    cohort = pd.read_csv(study / "results/cohort/cohort.tsv", sep="\t")
    assert len(geo) == 6 and (cohort["mask_side"] == cohort["side"]).all()  # mask-derived side = the demo's side
    split = pd.read_csv(study / "results/splits/cui.tsv", sep="\t")
    assert split.groupby("patient_id")["set"].nunique().max() == 1 and len(split) == 6
    base = pd.read_csv(study / "results/tables/baseline_low_vs_high.csv")
    sheet = pd.read_csv(study / "resources/demo_cohort/cohort.tsv", sep="\t")
    n_low = int((sheet["grade"] < 3).sum())
    assert any(c.startswith(f"low (n={n_low})") for c in base.columns)
    series = pd.read_csv(study / "results/ingest/series.tsv", sep="\t")
    assert len(series) == 24 and set(series["phase"]) == {"up", "cmp", "np", "ep"}
    # no DICOM PHI in results: the demo writes synthetic names/MRNs/accessions into its headers
    import pydicom
    ds = pydicom.dcmread(next((study / "resources/demo_cohort/dicom/DEMO001/S02").iterdir()))
    phi = [str(ds.PatientName), ds.PatientID, ds.AccessionNumber, ds.InstitutionName]
    for root, _, files in os.walk(study / "results"):
        for f in files:
            if f.endswith((".tsv", ".csv", ".md", ".log", ".json")):
                text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
                assert not any(p in text for p in phi), f


def test_training_matrix_tables(study):
    for stem in ("cui_table3", "cui_table4"):
        t = pd.read_csv(study / f"results/tables/{stem}.csv")
        assert len(t) and (study / f"results/tables/{stem}.md").exists()
    t3 = pd.read_csv(study / "results/tables/cui_table3.csv")
    assert set(t3["phases"]) == {"up", "cmp", "np", "ep", "all"} and set(t3["arch"]) == {"resnet34"}
    for ext in ("png", "pdf"):
        assert (study / f"results/figures/cui_roc.{ext}").stat().st_size > 1000
    import json

    meta = json.loads((study / "results/models/cui/box/se_resnet34/np/base/fold0/seed1/meta.json").read_text())
    assert meta["hyperparameters"]["arch"] == "se_resnet34" and meta["device"] == "cpu"
    assert not (study / "results/models/cui/box/se_resnet34/np/base/fold0/seed1/last.pt").exists()  # finished: no resume state
    # no patient of the split's test set was trained on
    split = json.loads((study / "results/splits/cui.json").read_text())["folds"][0]
    pred = pd.read_csv(study / "results/models/cui/box/resnet34/all/base/fold0/seed1/predictions.tsv", sep="\t")
    assert set(pred.loc[pred["set"] == "test", "patient_id"]) <= set(split["test"])
    assert not set(split["test"]) & set(split["train"])


def test_one_architectures_learning_rate_reruns_only_its_jobs(study, tmp_path):
    cfg = tiny_config()
    cfg["training"]["studies"]["cui"]["overrides"] = {"se_resnet34": {"lr": 0.0005}}
    jobs = planned_with(study, cfg)
    assert {w for rule, w in jobs if rule == "train_model"} == {
        "study=cui, roi=box, arch=se_resnet34, phases=np, variant=base, fold=0, seed=1"}
    # (the provenance record names the config's hash: a changed config rewrites it, and nothing reads it)
    # (and the checklist, which quotes the cells' hyperparameters)
    # (and its bundle, which grades the external centre's patients again: the study's external table)
    assert {rule for rule, _ in jobs} == {"train_model", "cui_tables", "provenance", "checklist", "privacy_scan", "all",
                                          "export_bundle", "external_grade", "cui_external"}
    # one grading job per study, each bundle loaded once for every external patient
    assert {w for rule, w in jobs if rule == "external_grade"} == {"study=cui"}


def test_li_and_dai_tables_and_heatmaps(study):
    import json

    t2 = pd.read_csv(study / "results/tables/li_table2.csv")
    assert set(t2["phases"]) == {"up", "cmp", "np"} and set(t2["set"]) == {"train", "test"}
    t3 = pd.read_csv(study / "results/tables/li_table3.csv")
    assert set(t3["phases"]) == {"up", "cmp", "np"}
    split = json.loads((study / "results/splits/li.json").read_text())["folds"][0]
    assert (t2.loc[t2["set"] == "test", "n"] == len(split["test"])).all()  # one cube per test patient
    for stem in ("li_mcnemar", "dai_table5"):
        assert (study / f"results/tables/{stem}.csv").exists() and (study / f"results/tables/{stem}.md").exists()
    t5 = pd.read_csv(study / "results/tables/dai_table5.csv")
    assert set(t5["variant"]) == {"b16", "b32"} and set(t5["batch"]) == {16, 32} and (t5["folds"] == 3).all()
    # out of fold: every patient of the k-fold split is predicted once per variant, by the fold that held it out
    for fold in range(3):
        pred = pd.read_csv(study / f"results/models/dai/centroid/resnet50/cmp/b16/fold{fold}/seed1/predictions.tsv", sep="\t",
                           dtype={"patient_id": str})
        held = json.loads((study / "results/splits/dai.json").read_text())["folds"][fold]["test"]
        assert set(pred.loc[pred["set"] == "test", "patient_id"]) <= set(held)
        assert not set(pred.loc[pred["set"] == "train", "patient_id"]) & set(held)
    for stem in ("li_roc", "li_confusion", "li_heatmaps", "dai_roc", "dai_confusion"):
        for ext in ("png", "pdf"):
            assert (study / f"results/figures/{stem}.{ext}").stat().st_size > 1000, stem


def test_sun_roi_settings_table(study):
    """Sun's three ROI settings, an axis of the matrix: one cell each, compared in one table (the registry's)."""
    t = pd.read_csv(study / "results/tables/sun_rois.csv")
    assert set(t["roi"]) == {"box", "tumor", "box5mm"} and set(t["set"]) == {"train", "test"}
    for roi in ("box", "tumor", "box5mm"):
        assert (study / f"results/models/sun/{roi}/resnet50/stack/base/fold0/seed1/predictions.tsv").exists()
    assert "Holm" in (study / "results/tables/sun_rois.md").read_text()
    for ext in ("png", "pdf"):
        assert (study / f"results/figures/sun_roc.{ext}").stat().st_size > 1000


def test_a_bundle_reproduces_the_cells_test_predictions(study):
    """`bundles` exports a cell; bundle.load(path).predict(volumes, annotations) crops each test patient with the
    recorded preprocessing (no config) and gives predictions.tsv's P(high) to 1e-5."""
    import json

    from ccgrade.config.cohort import patient_sources
    from ccgrade.deploy import bundle

    cell = "cui/box/resnet34/cmp/base/fold0/seed1"
    smk(study, "--cores", "2", f"results/bundles/{cell}/metadata.json")
    b = bundle.load(study / f"results/bundles/{cell}")
    md = json.loads((study / f"results/bundles/{cell}/metadata.json").read_text())
    assert md["outputs"]["prob_high"]["threshold"] == 0.5 and md["inputs"]["image"]["shape"] == [1, 32, 32]
    pred = pd.read_csv(study / f"results/models/{cell}/predictions.tsv", sep="\t", dtype={"patient_id": str})
    test = pred[pred["set"] == "test"]
    sheet = pd.read_csv(study / "resources/demo_cohort/cohort.tsv", sep="\t", dtype={"patient_id": str})
    recs = {r["patient_id"]: r for r in sheet.to_dict("records")}
    assert len(test) and md["evaluation"]["test"]["n_patients"] == test["patient_id"].nunique()
    for pid, want in test.groupby("patient_id"):
        src = patient_sources(recs[pid], ["up", "cmp", "np", "ep"], assume_layout=True)
        src = {ph: {f: str(study / "resources/demo_cohort" / v) for f, v in s.items()} for ph, s in src.items()}  # sheet-relative
        got = b.predict(study / f"results/volumes/{pid}", src, patient=pid, secret=study / "resources/private/secret.key")
        assert list(got["slice_index"]) == list(want["slice_index"])
        np.testing.assert_allclose(got["prob_high"].to_numpy(), want["prob_high"].to_numpy(), atol=1e-5)
    # a volume folder without the phase the model needs: an error naming the patient and the phase
    with pytest.raises(ValueError, match=r"DEMO001: the bundle needs phase\(s\) \['cmp'\]"):
        b.predict(study / "results/ingest", {}, patient="DEMO001")


def test_predict_on_the_studys_own_test_patients_gives_the_studys_probabilities(study, tmp_path):
    """`predict` over a sheet of the cell's own test patients (ingested again under results/predict/, cropped
    with the bundle's recorded preprocessing) gives predictions.tsv's patient P(high) to 1e-5, with the
    study's grades turned into metrics; nothing is retrained."""
    cell = "cui/box/resnet34/cmp/base/fold0/seed1"
    pred = pd.read_csv(study / f"results/models/{cell}/predictions.tsv", sep="\t", dtype={"patient_id": str})
    test = pred[pred["set"] == "test"]
    want = test.groupby("patient_id")["prob_high"].mean()
    sheet = pd.read_csv(study / "resources/demo_cohort/cohort.tsv", sep="\t", dtype={"patient_id": str})
    own = sheet[sheet["patient_id"].isin(want.index)].copy()
    for col in ("dicom_dir", "annotation_dir"):
        own[col] = str(study / "resources/demo_cohort") + "/" + own[col]
    own.to_csv(tmp_path / "own_test.tsv", sep="\t", index=False)  # the user's files: outside the study's folder
    (tmp_path / "predict_own.yaml").write_text(yaml.safe_dump({"predict": {
        "sheet": str(tmp_path / "own_test.tsv"), "name": "own_test", "model": {"study": "cui", "arch": "resnet34", "phases": "cmp"}}}))
    trained = (study / f"results/models/{cell}/best.pt").stat().st_mtime
    smk(study, "predict", "--cores", "2", "--configfile", str(tmp_path / "predict_own.yaml"))
    got = pd.read_csv(study / "results/predict/own_test/predictions.csv", dtype={"patient_id": str})
    assert list(got["patient_id"]) == sorted(want.index)
    np.testing.assert_allclose(got["prob_high"], want.loc[got["patient_id"]].to_numpy(), atol=1e-5)
    assert (got["n_members"] == 1).all() and (got["call"] == np.where(got["prob_high"] >= 0.5, "high", "low")).all()
    m = pd.read_csv(study / "results/predict/own_test/metrics.csv")
    assert m["n_graded"].iloc[0] == len(want) and m["n_ungraded"].iloc[0] == 0
    assert m["internal_n"].iloc[0] == len(want)  # the model's own test patients, the very ones graded here
    if "auc_difference" in m:  # (both grades among them): the same patients, the same AUC
        assert abs(m["auc_difference"].iloc[0]) < 1e-5
    assert (study / f"results/models/{cell}/best.pt").stat().st_mtime == trained  # not retrained
    # a new patient whose images lack the phase the model reads: the pre-flight names it, before any job
    lame = tmp_path / "lame" / "dicom"
    import shutil

    shutil.copytree(study / "resources/demo_cohort/dicom/DEMO001/S02", lame / "S02")  # the plain phase only
    pd.DataFrame([{"patient_id": "X01", "dicom_dir": "lame/dicom", "annotation_dir": str(study / "resources/demo_cohort/"
                   "annotations/DEMO001")}]).to_csv(tmp_path / "lame.tsv", sep="\t", index=False)  # dicom_dir: sheet-relative
    (tmp_path / "predict_lame.yaml").write_text(yaml.safe_dump({"predict": {
        "sheet": str(tmp_path / "lame.tsv"), "name": "lame", "model": {"study": "cui", "arch": "resnet34", "phases": "cmp"}}}))
    r = smk(study, "predict", "-n", "--cores", "2", "--configfile", str(tmp_path / "predict_lame.yaml"), check=False)
    assert r.returncode != 0
    assert f"patient X01, phase cmp, file {tmp_path / 'lame.tsv'}: the model (cui resnet34 on cmp" in r.stderr
    assert "usable phases: up" in r.stderr and not (study / "results/predict/lame").exists()


def test_predict_grades_the_demos_new_patients_with_the_fold_ensemble(study):
    """The demo's `predict`: new synthetic patients (drawn after the cohort's) graded by Dai's fold models
    averaged; per patient a summary and a page; the table, the metrics and a clean privacy scan."""
    smk(study, "--cores", "2", "predict")
    d = study / "results/predict/new"
    t = pd.read_csv(d / "predictions.csv", dtype={"patient_id": str})
    import json

    metas = [json.loads(f.read_text()) for f in sorted((study / "results/bundles/dai").glob("**/metadata.json"))]
    trained = [m for m in metas if m["cell"]["variant"] == metas[0]["cell"]["variant"] and m["trained"]]
    assert len({m["cell"]["fold"] for m in metas}) == 3 and trained  # a fold the tiny cohort cannot train is left out
    assert list(t["patient_id"]) == ["DEMO007", "DEMO008"] and (t["n_members"] == len(trained)).all()
    for pid in t["patient_id"]:
        img = pd.read_csv(d / f"patients/{pid}/images.tsv", sep="\t")
        per = img.groupby("member")["prob_high"].mean()
        assert sorted(per.index) == list(range(len(trained)))
        assert t.loc[t["patient_id"] == pid, "prob_high"].iloc[0] == pytest.approx(per.mean(), abs=1e-6)
        assert (d / f"patients/{pid}/page.png").stat().st_size > 10_000 and (d / f"patients/{pid}/page.pdf").exists()
    assert pd.read_csv(d / "metrics.csv")["n_graded"].iloc[0] == 2
    assert pd.read_csv(d / "privacy_scan.tsv", sep="\t").empty
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(smk(study, "--cores", "2", "predict"))


def test_every_study_is_validated_on_the_demos_external_centre(study):
    """The demo's second centre (another vendor's series names, noisier thinner slices) is ingested apart and
    graded by every bundle of every study; each study's external table agrees with the per-patient files and
    the models' own predictions, recomputed here."""
    from sklearn.metrics import roc_auc_score

    ext = study / "results/external/C"
    from ccgrade.ingest import demo

    cfg = tiny_config()
    sheet = demo.draw_cohort(demo.external_settings(cfg["demo"], cfg["external"]["demo"], "C"))
    assert list(sheet["patient_id"]) == ["EXT001", "EXT002", "EXT003"] and set(sheet["centre"]) == {"C"}
    assert set(sheet["grade_group"]) == {"low", "high"}  # (the tiny centre's seed gives both)
    series = pd.read_csv(ext / "ingest/EXT001/series.tsv", sep="\t")
    assert series["series_description"].str.endswith("3.0 B30f").all()  # the vendor's names, mapped to phases
    status = pd.read_csv(ext / "ingest/EXT001/phases.tsv", sep="\t")
    assert (status["status"] == "ok").all() and (status["n_slices"] == 23).all()
    grades = sheet.set_index("patient_id")["grade_group"]
    for s in ("cui", "li", "dai", "sun"):
        t = pd.read_csv(study / f"results/tables/{s}_external.csv")
        assert (study / f"results/tables/{s}_external.md").read_text().startswith(f"**{s}: external validation")
        assert (study / f"results/figures/{s}_external.png").stat().st_size > 10_000
        img = pd.concat(pd.read_csv(ext / f"{s}/patients/{p}.tsv", sep="\t", dtype={"patient_id": str})
                        for p in sheet["patient_id"])
        ok = img[img["status"] == "ok"]
        keys = ["roi", "arch", "phases", "variant"]
        assert len(t) == len(img.groupby(keys))
        per = ok.groupby(keys + ["fold", "seed", "patient_id"])["prob_high"].mean().groupby(keys + ["patient_id"]).mean()
        for _, r in t.iterrows():
            p = per.loc[tuple(r[k] for k in keys)]
            y = (grades.loc[p.index] == "high").to_numpy(int)
            assert r["n_graded"] == len(p)
            if len(set(y)) == 2:
                assert r["auc"] == pytest.approx(roc_auc_score(y, p.to_numpy()), abs=1e-9)
            call = p.to_numpy() >= 0.5
            if (y == 1).any():
                assert r["sensitivity"] == pytest.approx(call[y == 1].mean())
    # the frozen bundle grades an external patient as its own loader does
    b = __import__("ccgrade.deploy.bundle", fromlist=["load"]).load(study / "results/bundles/cui/box/resnet34/cmp/base/fold0/seed1")
    src = {"cmp": {"labelme": str(study / "resources/demo_external/C/annotations/EXT002/cmp/labelme")}}
    own = b.predict(ext / "volumes/EXT002", src, patient="EXT002", secret=study / "resources/private/secret.key")
    img = pd.read_csv(ext / "cui/patients/EXT002.tsv", sep="\t", dtype={"patient_id": str})
    mine = img[(img["arch"] == "resnet34") & (img["phases"] == "cmp")]
    np.testing.assert_allclose(mine["prob_high"], own["prob_high"], atol=1e-5)


def test_every_file_a_job_writes_is_declared(study):
    """Outputs named once (issue 16): `snakemake --list-untracked` finds no file that no rule declares. It
    cannot see some kinds of declared file, which are set aside by their declaration: job logs and
    benchmarks (log:, benchmark:), the files inside directory() outputs (the demo's DICOM and labelme
    folders, a patient's volumes), outputs of targets outside the default one (the bundle the test above
    exported, `predict`'s outputs and the demo's new patients it grades) and the config itself; and the privacy scan's private list of hits, kept outside results/ on
    purpose so that a failing scan (which deletes its declared outputs) leaves it."""
    r = smk(study, "--list-untracked")
    set_aside = ("resources/demo_cohort/dicom/", "results/volumes/", "results/bundles/", "results/predict/",
                 "resources/private/predict/", "resources/demo_cohort/annotations/DEMO007/",
                 "resources/demo_cohort/annotations/DEMO008/",
                 # the external centre's DICOM and volume folders (directory() outputs)
                 "resources/demo_external/C/dicom/", "results/external/C/volumes/")
    listed = [x.strip() for x in r.stdout.splitlines() if x.strip() and not x.startswith(("ccgrade pre-flight", "Building"))]
    undeclared = [f for f in listed if not (
        f.startswith(("results/logs/", "results/benchmarks/") + set_aside) or "/labelme/" in f
        or f == "config.yaml" or f.endswith("/privacy_scan_values.tsv"))]
    assert not undeclared, undeclared
    assert any(f.startswith("results/logs/") for f in listed)  # the listing itself works


def test_radiomics_and_fusion_outputs(study):
    rad = pd.read_csv(study / "results/radiomics/features.tsv", sep="\t")
    assert len(rad) == 6 and (rad["status"] == "ok").all() and (rad["mode"] == "full").all()
    assert rad.filter(like="wavelet-").shape[1] > 100 and rad.filter(like="log-sigma").shape[1] > 50
    deep = pd.read_csv(study / "results/fusion/deep_features.tsv", sep="\t")
    assert len(deep) == 6 and deep.shape[1] == 1 + 2048  # ResNet50 embeddings, one row per patient
    # six patients are too few to select features by cross-validation: the outputs say so
    assert "not fitted" in (study / "results/tables/fusion_models.md").read_text()
    for ext in ("png", "pdf"):
        assert (study / f"results/figures/fusion_calibration_dca.{ext}").exists()


def test_failure_analysis_of_every_study(study):
    """Each study's failure analysis judges its first model's test patients (Dai: the fold models pooled, each
    patient once): the errors recounted from the cells' predictions, most confident first, and the error rates."""
    for name, cells in (("cui", ["cui/box/resnet34/up/base/fold0/seed1"]),
                        ("dai", sorted(str(p.parent.relative_to(study / "results/models")) for p in
                                       (study / "results/models/dai").glob("centroid/resnet50/cmp/*/fold*/seed1/predictions.tsv")))):
        if name == "dai":  # the first variant only (the config's order, as the matrix)
            first = cells[0].split("/")[4]
            cells = [c for c in cells if c.split("/")[4] == first]
        preds = [pd.read_csv(study / f"results/models/{c}/predictions.tsv", sep="\t", dtype={"patient_id": str})
                 for c in cells]
        test = pd.concat([p[p["set"] == "test"] for p in preds if len(p)])
        per = test.groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
        wrong = per[(per["p"] >= 0.5).astype(int) != per["y"]]
        f = pd.read_csv(study / f"results/tables/{name}_failures.csv", dtype={"patient_id": str})
        assert set(f["patient_id"]) == set(wrong.index) and per.index.is_unique
        assert list(f["confidence"]) == sorted(f["confidence"], reverse=True)
        r = pd.read_csv(study / f"results/tables/{name}_error_rates.csv")
        assert r.loc[r["subgroup"] == "all", ["n", "errors"]].values.tolist() == [[len(per), len(wrong)]]
        assert {"size band", "centre", "sex", "usable phases"} <= set(r["subgroup"])
        assert (study / f"results/figures/{name}_failures.png").stat().st_size > 5000


def test_the_checklist_answers_from_the_runs_own_files(study):
    """results/checklist.{csv,md}: all 42 CLAIM items, and the numbers it quotes are the run's (checked here
    against the cohort and the first Cui model's predictions, recomputed)."""
    from sklearn.metrics import roc_auc_score

    t = pd.read_csv(study / "results/checklist.csv", dtype={"item": str})
    claim = t[t["guideline"] == "CLAIM"].set_index("item")
    assert list(claim.index) == [str(i) for i in range(1, 43)]
    assert (claim["status"] == "filled").sum() >= 20 and (claim["status"] == "authors").sum() >= 8
    cohort = pd.read_csv(study / "results/cohort/cohort.tsv", sep="\t")
    n_high = int((cohort["grade_group"] == "high").sum())
    assert f"{n_high} high grade, {len(cohort) - n_high} low grade" in claim.loc["14", "answer"]
    m = re.search(r"cui \(resnet34 on (\w+), box\)", claim.loc["36", "answer"])  # the study's first model
    assert m, claim.loc["36", "answer"]
    cell = study / f"results/models/cui/box/resnet34/{m.group(1)}/base/fold0/seed1"
    pred = pd.read_csv(cell / "predictions.tsv", sep="\t")
    pat = pred[pred["set"] == "test"].groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    want = f"{len(pat)} test patients, AUC {roc_auc_score(pat['y'], pat['p']):.3f}" if pat["y"].nunique() == 2 else \
        f"{len(pat)} test patients, AUC n/a"
    assert want in claim.loc["36", "answer"], claim.loc["36", "answer"]
    commit = json.loads((study / "results/provenance.json").read_text())["git"]["commit"]
    assert commit in claim.loc["41", "answer"]
    md = (study / "results/checklist.md").read_text()
    assert "## CLAIM" in md and "## TRIPOD+AI" in md and "to be completed by the authors" in md


def test_html_report_gathers_every_paper_item(study):
    """`snakemake --report` (README command 1 ends with it): one self-contained HTML page holding every
    table and figure marked for the report, under the papers' categories, with their captions."""
    r = smk(study, "--report", "results/report.html")
    html = (study / "results/report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and len(html) > 100_000
    for item in ("Cui Table 2", "Cui Table 3", "Cui Table 4", "Cui Figure 1", "Cui Figures 2-4", "Li Table 1",
                 "Li Table 2", "Li Table 3", "Li strong vs weak", "Li Figures 4-5", "Li Figure 6", "Dai Table 5",
                 "Dai Figures 9-10", "Sun: fused models", "Sun: calibration and decision curves",
                 "Sun: the three ROI settings", "Sun: ROC curves per ROI setting",
                 "Failure analysis: most confident errors (cui)", "Failure analysis: error rates by subgroup (dai)",
                 "Failure analysis: crops and Grad-CAM (li)", "External validation (dai)"):
        assert item in html, item
    for category in ("Cui et al.", "Li et al.", "Dai", "Sun et al.", "Cohort", "Ingest", "Reporting checklist",
                     "External validation"):
        assert category in html, category
    assert "net benefit" in html  # a caption's text, not only its label
    # no DICOM names or MRNs (the demo writes both) in the page's text; its embedded files are base64, where
    # any three letters turn up by chance (the privacy_report rule decodes and scans them)
    text = re.sub(r"[A-Za-z0-9+/=]{200,}", "", html)
    assert "^Synthetic" not in text and "MRN" not in text
    assert r.returncode == 0
    # and the page scanned as README command 1 does last: clean (the rules' wildcard constraints name the demo's
    # external folder, which is the study's path, not a patient's)
    smk(study, "--cores", "1", "privacy_report", "-q")
    assert pd.read_csv(study / "results/privacy_scan_report.tsv", sep="\t").empty


def test_no_dicom_phi_anywhere_in_results(study):
    """The demo writes synthetic PHI into every DICOM header (name, MRN, birth date, accession number,
    institution); none of it may reach any file under results/ - tables, logs, model metadata and
    weights, crops, figures, the HTML report - in any form we can search: UTF-8 and UTF-16 bytes."""
    import pydicom

    phi, births = set(), set()
    for pdir in sorted((study / "resources/demo_cohort/dicom").iterdir()):
        ds = pydicom.dcmread(next(next(pdir.iterdir()).iterdir()), stop_before_pixels=True)
        phi |= {str(ds.PatientName), str(ds.PatientName).split("^")[0], ds.PatientID, ds.AccessionNumber,
                ds.InstitutionName}
        births.add(ds.PatientBirthDate)
    assert len(phi) >= 6 * 4 and all(len(v) >= 6 for v in phi) and len(births) >= 3
    needles = [v.encode(enc) for v in phi for enc in ("utf-8", "utf-16-le")]
    # a birth date is eight digits: searched as a whole token in text (not inside a float's digits)
    date = re.compile(r"(?<![\d.])(" + "|".join(sorted(births)) + r")(?!\d)")
    files = [p for p in (study / "results").rglob("*") if p.is_file()]
    assert (study / "results/report.html") in files and len(files) > 300
    # one pass a file for all needles (3.3 GB of results: 68 substring scans each took 105 s, one alternation 18 s)
    any_needle = re.compile(b"|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))
    for f in files:
        data = f.read_bytes()
        hit = any_needle.search(data)
        assert not hit, f"{f.relative_to(study)} holds DICOM PHI {hit.group(0)!r}"
        if f.suffix in (".tsv", ".csv", ".md", ".json", ".log", ".html", ".txt"):
            m = date.search(data.decode("utf-8", "replace"))
            assert not m, f"{f.relative_to(study)} holds a DICOM birth date ({m.group(0)})"


def test_one_variants_batch_size_reruns_only_its_folds(study):
    cfg = tiny_config()
    # (b32, not the study's first model b16, which the failure analysis reads: that would rerun it too)
    cfg["training"]["studies"]["dai"]["variants"]["b32"] = {"batch": 24}
    jobs = planned_with(study, cfg)
    assert {w for rule, w in jobs if rule == "train_model"} == {
        f"study=dai, roi=centroid, arch=resnet50, phases=cmp, variant=b32, fold={f}, seed=1" for f in range(3)}
    assert {rule for rule, _ in jobs} == {"train_model", "dai_tables", "provenance", "checklist", "privacy_scan", "all",
                                          "export_bundle", "external_grade", "dai_external"}


def test_a_new_patient_reruns_only_its_own_jobs_and_the_cohort_level_ones(study):
    """Adding a patient (demo: n_patients 6 -> 7; existing patients are drawn unchanged) runs that patient's
    jobs and everything that gathers all patients, and never an existing patient's ingest, crops,
    geometry or radiomics."""
    cfg = tiny_config()
    cfg["demo"]["n_patients"] = 7
    jobs = planned_with(study, cfg)
    per_patient = {"demo_patient", "ingest_patient", "crop_roi", "tumour_geometry", "radiomics_patient"}
    drawn = {w for rule, w in jobs if rule in per_patient} - {"demo=demo_cohort, pid=DEMO007"}  # (if predict has not)
    assert drawn == {"pid=DEMO007", *(f"roi={r}, pid=DEMO007" for r in tiny_config()["rois"])}
    # (the external centre's patients are drawn apart: none of theirs but their grading by the new models)
    assert not {w for rule, w in jobs if rule in ("graded_ingest",)}
    # the cohort-level stages: the new patient changes the splits, so every model and table after them
    assert {"demo_cohort", "cohort_sheet", "split", "baseline_grade", "crop_manifest", "radiomics_table",
            "train_model", "cui_tables", "fusion"} <= {rule for rule, _ in jobs}
    assert "roi_montage" not in {rule for rule, _ in jobs}  # the montage shows the first patient only


def test_a_changed_window_preset_reruns_only_the_crops_that_use_it(study):
    cfg = tiny_config()
    cfg["windows"]["dai"]["level"] = 50  # only the centroid ROI (Dai) uses the dai window
    jobs = planned_with(study, cfg)
    assert {w for rule, w in jobs if rule == "crop_roi"} == {f"roi=centroid, pid=DEMO00{i}" for i in range(1, 7)}
    trained = {w for rule, w in jobs if rule == "train_model"}
    assert trained == {f"study=dai, roi=centroid, arch=resnet50, phases=cmp, variant={v}, fold={f}, seed=1"
                       for v in ("b16", "b32") for f in range(3)}
    assert {rule for rule, _ in jobs} == {"crop_roi", "crop_manifest", "exclusions", "train_model", "dai_tables",
                                          "dai_failures", "provenance", "checklist", "privacy_scan", "all",
                                          "export_bundle", "external_grade", "dai_external"}


def test_a_code_change_to_one_stage_reruns_that_stage_and_its_dependants_only(study):
    module = SNAKEFILE["path"].parent / "workflow/src/ccgrade/evaluate/baseline.py"
    original = module.read_text()
    module.write_text(original + "\n# an edit\n")
    try:
        jobs = planned_jobs((lambda r: r.stdout + r.stderr)(smk(study, "-n", "--cores", "2")))
    finally:
        module.write_text(original)
    assert jobs == {("baseline_grade", ""), ("baseline_split", "scheme=li"), ("privacy_scan", ""), ("all", "")}, jobs
    r = smk(study, "-n", "--cores", "2")  # restored content: nothing to do (Snakemake 9 compares checksums)
    assert "Nothing to be done" in r.stdout + r.stderr


@pytest.mark.parametrize("module, must, must_not", [
    # (the splits rerun too: they read the cohort table, which takes the tumour size from the geometry)
    ("annotations/rtstruct", {"crop_roi", "tumour_geometry", "radiomics_patient"}, {"ingest_patient", "demo_patient"}),
    ("stats", {"baseline_grade", "train_model", "cui_tables", "li_tables", "dai_tables", "fusion"},
     {"crop_roi", "ingest_patient", "tumour_geometry", "radiomics_patient"}),
    ("learn/models", {"train_model", "deep_features", "li_heatmaps", "fusion"},
     {"crop_roi", "baseline_grade", "ingest_patient", "radiomics_patient"}),
])
def test_editing_an_imported_module_reruns_the_stages_that_import_it(study, module, must, must_not):
    """Code inputs follow imports (ccgrade.deps): editing a module no rule names as its own reruns every
    stage whose code imports it, and nothing upstream."""
    path = SNAKEFILE["path"].parent / f"workflow/src/ccgrade/{module}.py"
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        rules = {rule for rule, _ in planned_jobs((lambda r: r.stdout + r.stderr)(smk(study, "-n", "--cores", "2")))}
    finally:
        path.write_text(original)
    assert must <= rules and not must_not & rules, rules


def test_second_run_has_nothing_to_do(study):
    r = smk(study, "-n", "--cores", "2")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_editing_one_mask_reruns_only_what_reads_it(study):
    """Editing (not just touching: Snakemake 9 compares checksums) one annotation reruns only what depends on it."""
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage

    mask = study / "resources/demo_cohort/annotations/DEMO003/cmp/mask.nii.gz"
    original = mask.read_bytes()
    os.utime(mask, (time.time() + 10, time.time() + 10))
    r = smk(study, "-n", "--cores", "2")
    assert "Nothing to be done" in r.stdout + r.stderr  # a touch alone changes nothing
    img = sitk.ReadImage(str(mask))
    grown = sitk.GetImageFromArray(ndimage.binary_dilation(sitk.GetArrayFromImage(img) > 0).astype(np.uint8))
    grown.CopyInformation(img)
    sitk.WriteImage(grown, str(mask), True)
    try:
        r = smk(study, "-n", "--cores", "2")
        jobs = planned_jobs(r.stdout + r.stderr)
    finally:
        mask.write_bytes(original)
    crop_jobs = {w for rule, w in jobs if rule == "crop_roi"}
    assert crop_jobs == {"roi=tumor, pid=DEMO003", "roi=cube, pid=DEMO003", "roi=slice, pid=DEMO003"}, jobs
    # the mask also feeds the tumour geometry, hence the analysis cohort and the baseline tables (a changed
    # tumour can change its side or size), but never the splits: they read the sheet without geometry
    assert {w for rule, w in jobs if rule == "tumour_geometry"} == {"pid=DEMO003"}
    # ... and that patient's radiomics, the fusion, and the models trained on mask-based crops (Li's cube
    # and slice networks, Sun's tumour-only setting) with their tables; the box, centroid and box5mm models
    # (Cui, Dai, Sun's other two settings and the fusion's deep block) stay
    assert {w for rule, w in jobs if rule == "radiomics_patient"} == {"pid=DEMO003"}
    trained = {w for rule, w in jobs if rule == "train_model"}
    assert len(trained) == 7 and sum(w.startswith("study=li,") for w in trained) == 6, trained
    assert {w for w in trained if w.startswith("study=sun,")} == {
        "study=sun, roi=tumor, arch=resnet50, phases=stack, variant=base, fold=0, seed=1"}
    assert {rule for rule, _ in jobs} == {"crop_roi", "crop_manifest", "exclusions", "tumour_geometry", "geometry_table",
                                          "cohort_table", "baseline_grade", "baseline_split", "radiomics_patient",
                                          "radiomics_table", "fusion", "train_model", "li_tables", "li_heatmaps", "sun_tables",
                                          "privacy_scan", "all", "checklist",  # it counts the cohort's grades
                                          # every failure analysis reads the analysis cohort (size bands)
                                          "cui_failures", "li_failures", "dai_failures", "sun_failures",
                                          # the retrained models' bundles grade the external centre again
                                          "export_bundle", "external_grade", "li_external", "sun_external"}


def test_bad_config_key_is_named_before_any_job(study, tmp_path):
    cfg = tiny_config()
    cfg["rois"]["box"]["size"] = "large"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = smk(tmp_path, "-n", "--cores", "1", check=False)
    assert r.returncode != 0 and "rois.box.size" in r.stdout + r.stderr
    assert not (tmp_path / "results").exists()
