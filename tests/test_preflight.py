"""The pre-flight check and the config derived from the cohort: every problem of a first run in one list
before any job, each with its fix; auto values and skipped parts; the header survey's cache; the starter
config; failed jobs' messages on the console."""

from __future__ import annotations

import shutil

import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml

from ccgrade.config import studyconfig
from ccgrade.plan import preflight, problem_report, survey
from conftest import one_phase_rtstruct_cohort, repo_config


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    """Six patients of a one-phase RTSTRUCT cohort (re-exported CT, RTSTRUCTs referencing the old UIDs)."""
    root = tmp_path_factory.mktemp("preflight")
    return one_phase_rtstruct_cohort(root, 6)


def sheet_cfg(sheet) -> dict:
    cfg = repo_config()
    cfg["cohort"]["sheet"] = str(sheet)
    return cfg


def test_a_clean_one_phase_cohort_plans_with_the_study_cut_to_its_phase(hospital, tmp_path):
    p = preflight.plan(sheet_cfg(hospital), cache=tmp_path / "survey.json")
    assert not p.errors, [str(x) for x in p.errors]
    c = p.config
    assert c["cohort"]["source"] == "sheet" and c["phases"] == ["up"] and c["stack"]["phases"] == ["up"]
    assert c["splits"]["require_phases"] == ["up"] and c["geometry"]["phase"] == "up" and c["radiomics"]["phase"] == "up"
    st = c["training"]["studies"]
    assert set(st) == {"cui", "li", "dai"}  # Sun's multi-channel model needs two phases: left out
    assert st["cui"]["models"] == {"resnet34": ["up"], "se_resnet34": ["up"]}
    assert st["li"]["models"]["resnet3d18"]["phases"] == ["up"] and st["dai"]["models"]["resnet50"] == ["up"]
    assert c["fusion"]["deep"] is None and c["fusion"]["clinical"] == [] and c["fusion"]["enabled"]
    # no clinical column; the side comes from the tumour outline on the CT (geometry)
    assert [v["name"] for v in c["baseline"]["variables"]] == ["side"] and "age" in c["baseline"]["missing_variables"]
    assert p.facts["links"] == {"position": 6} and p.facts["formats"] == {"rtstruct": 6}
    text = problem_report.report(p)
    assert "RTSTRUCTs: contours linked to slices by plane position (6)" in text
    for line in ("training.studies.sun: the cohort feeds none of its models",
                 "fusion.deep: the cell sun/resnet50/stack is left out",
                 "baseline.variables: the cohort has no column sex, age",
                 "training.studies.dai.models.resnet50: phases ['cmp'] are not in the cohort; trains on up"):
        assert line in text, line


def test_every_mistake_of_a_first_run_is_listed_at_once(hospital, tmp_path):
    """Six different mistakes, one run: each named with its patient/file and a fix; nothing is run."""
    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    sheet.loc[1, "grade"] = "G7"                                      # 1. an unknown grade
    sheet["mask_pv"] = ""                                             # 2. a misspelt source column
    sheet.loc[2, "dicom_dir"] = "export/patient_003/CT_missing"       # 3. a folder that does not exist
    rt = root / "export/patient_004/RTSTRUCT.dcm"                     # 4. an RTSTRUCT whose ROI is not the tumour's name
    ds = pydicom.dcmread(rt)
    ds.StructureSetROISequence[0].ROIName = "Kidney_L"
    ds.save_as(rt)
    m = sitk.Image([40, 40, 5], sitk.sitkUInt8)                       # 5. a mask not on the image's grid
    sitk.WriteImage(m, str(root / "export/patient_005/mask.nii.gz"))
    sheet.loc[4, "mask_up"] = "export/patient_005/mask.nii.gz"
    sheet.loc[5, "rtstruct_up"] = "export/patient_001/RTSTRUCT.dcm"   # 6. another patient's structure set
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    p = preflight.plan(sheet_cfg(root / "cohort.tsv"), cache=tmp_path / "survey.json")
    text = problem_report.report(p)
    want = [
        ("patient 002", "unknown grade value 'G7'", "write the grade as 1-4"),
        ("column mask_pv", "'pv' is not a phase code", "rename the column to mask_np"),
        ("patient 003", "CT_missing' is not a folder", "correct the path"),
        ("patient 004", "no ROI name matches rtstruct_roi", "set config key rtstruct_roi"),
        ("patient 005", "the mask is not on the up image's grid", "give the mask drawn on this patient's up series"),
        ("patient 006", "it was drawn on other images", "give the structure set drawn on the up series"),
    ]
    errors = [str(x) for x in p.errors]
    assert len(errors) == len(want), errors
    for who, what, fix in want:
        hit = [e for e in errors if who in e and what in e]
        assert hit and fix in hit[0], (who, what, errors)
    # another patient's structure set (other series, other frame of reference): no override is offered
    assert "rtstruct_link" not in next(e for e in errors if "patient 006" in e)
    assert f"{len(want)} error(s): nothing was run" in text


@pytest.mark.slow
def test_snakemake_dry_run_lists_all_mistakes_before_any_job(hospital, tmp_path):
    from test_workflow import smk

    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    sheet.loc[0, "grade"] = "5"
    sheet.loc[1, "dicom_dir"] = "nowhere"
    sheet["msk_up"] = ""
    sheet.loc[3, "patient_id"] = "004 b"
    sheet.loc[4, "rtstruct_up"] = "export/patient_001/RTSTRUCT.dcm"
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "study.yaml").write_text(yaml.safe_dump({"cohort": {"sheet": str(root / "cohort.tsv")}}))
    r = smk(wd, "-n", "--cores", "1", "--configfile", str(wd / "study.yaml"), check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "5 error(s): nothing was run" in out, out[-3000:]
    for needle in ("unknown grade value 5", "nowhere' is not a folder", "looks like a misspelt 'mask_up'",
                   "patient ID '004 b'", "drawn on other images"):
        assert needle in out, needle
    assert not (wd / "results").exists()
    assert (wd / ".snakemake/ccgrade/preflight.txt").exists()  # the full list, outside results/


def tree_state(*roots) -> dict[str, tuple]:
    """Every path under ``roots`` but Snakemake's own state folder, with its size, modification time and mode."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if ".snakemake" not in p.relative_to(root).parts:
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns, st.st_mode) if not p.is_dir() else ("dir", st.st_mode)
    return out


def test_a_dry_run_and_lint_change_no_file(hospital, tmp_path):
    """Issue 28: parsing the Snakefile wrote the privacy key, the private record of the input paths and the
    private copy of the sheet, so `snakemake -n` or `--lint` changed the working tree. Now only a real run
    makes them (the slow ingest test below checks that it does), and the dry run still plans every job."""
    from test_workflow import smk

    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "study.yaml").write_text(yaml.safe_dump({"cohort": {"sheet": str(root / "cohort.tsv")}}))
    before = tree_state(wd, root)
    r = smk(wd, "-n", "--cores", "1", "--configfile", str(wd / "study.yaml"), check=False)
    assert r.returncode == 0 and "ingest_patient" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    smk(wd, "--lint", "--configfile", str(wd / "study.yaml"), check=False)
    smk(wd, "--list-rules", "--configfile", str(wd / "study.yaml"), check=False)
    assert tree_state(wd, root) == before
    assert (wd / ".snakemake").is_dir()  # (Snakemake's own folder, which a dry run writes itself)


def test_the_survey_is_cached_and_renewed_when_a_folder_changes(hospital, tmp_path, monkeypatch):
    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    cfg = sheet_cfg(root / "cohort.tsv")
    cache = tmp_path / "survey.json"
    first = preflight.plan(cfg, cache=cache)
    calls = []
    real = survey.survey_patient
    monkeypatch.setattr(survey, "survey_safely", lambda rec, c: calls.append(rec["patient_id"]) or real(rec, c))
    again = preflight.plan(cfg, cache=cache)
    assert calls == [] and again.config == first.config  # nothing read again
    (root / "export/patient_002/CT/EXP0000.dcm").unlink()  # a file removed: that patient's folder changed
    preflight.plan(cfg, cache=cache)
    assert calls == ["002"]
    cfg2 = dict(cfg, rtstruct_roi="nothing")  # a config key the survey depends on: every patient again
    preflight.plan(cfg2, cache=cache)
    assert sorted(calls[1:]) == ["001", "002", "003", "004", "005", "006"]
    # a file rewritten in place (a re-anonymisation: the folder's entries, so its time, unchanged): that patient
    # again. The folder time alone served the old headers: found running an unfamiliar layout (issue 28)
    f = root / "export/patient_003/CT/EXP0001.dcm"
    ds = pydicom.dcmread(f)
    ds.PatientID = "ANON-0003"
    folder_time = f.parent.stat().st_mtime_ns
    ds.save_as(f)
    assert f.parent.stat().st_mtime_ns == folder_time
    preflight.plan(cfg2, cache=cache)
    assert calls[7:] == ["003"]


def test_replace_takes_a_users_mapping_whole():
    base = repo_config()
    user = {"replace": ["training.studies"], "training": {"studies": {"mine": {"preset": "demo", "roi": "box",
                                                                               "scheme": "cui", "seeds": [1],
                                                                               "models": {"resnet18": ["auto"]}}}}}
    merged = dict(base, training={**base["training"], "studies": {**base["training"]["studies"],
                                                                   **user["training"]["studies"]}})
    merged["replace"] = user["replace"]
    assert studyconfig.apply_replace(merged, [user]) == []
    assert list(merged["training"]["studies"]) == ["mine"] and "replace" not in merged
    bad = studyconfig.apply_replace(dict(base, replace=["rois"]), [{"replace": ["rois"]}])
    assert bad and "'rois' is listed but the same config file does not set it" in bad[0].message


def test_derived_config_for_a_two_phase_cohort():
    """Plain and nephrographic only: Cui's per-phase models on both plus 'all'; Dai's arterial model falls back
    to the preferred phase the cohort has; Sun stacks the one contrast phase with the plain one."""
    facts = {"imaged": {"up": 10, "np": 10}, "outlined": {"np": 10, "up": 4}, "formats": {"mask": 10},
             "columns": ["age", "sex"], "any_images": True}
    c, notes = studyconfig.derive_config(repo_config(), facts)
    assert c["phases"] == ["up", "np"] and c["stack"]["phases"] == ["up", "np"] and c["geometry"]["phase"] == "np"
    assert c["training"]["studies"]["cui"]["models"]["resnet34"] == ["up", "np", "all"]
    assert c["training"]["studies"]["dai"]["models"]["resnet50"] == ["np"]
    assert "sun" in c["training"]["studies"] and c["fusion"]["clinical"] == ["age", "sex"]
    assert [v["name"] for v in c["baseline"]["variables"]] == ["sex", "age"]
    assert any("dai.models.resnet50: phases ['cmp'] are not in the cohort; trains on np" in n.message for n in notes)


def test_masks_only_cohorts_require_no_phase_and_train_nothing():
    facts = {"imaged": {}, "outlined": {"cmp": 300}, "formats": {"mask": 300}, "columns": ["age"], "any_images": False}
    c, notes = studyconfig.derive_config(repo_config(), facts)
    assert c["phases"] == ["cmp"] and c["splits"]["require_phases"] == [] and c["training"]["studies"] == {}
    assert any("no patient has images" in n.message for n in notes)


def test_the_starter_config_is_valid_and_sets_only_what_defaults_cannot_know(hospital, tmp_path):
    from ccgrade.plan import init

    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    for rt in root.glob("export/*/RTSTRUCT.dcm"):  # ROI names the default pattern does not match
        ds = pydicom.dcmread(rt)
        ds.StructureSetROISequence[0].ROIName = "Primary K1"
        ds.save_as(rt)
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    sheet["age"] = [61, 55, 70, 48, 66, 59]
    sheet["sex"] = ["M", "F", "M", "M", "F", "M"]
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    text = init.starter_config(root / "cohort.tsv")
    cfg = yaml.safe_load(text)
    assert cfg["cohort"] == {"sheet": str((root / "cohort.tsv").resolve())}
    assert cfg["rtstruct_roi"] == "^Primary\\ K1$"
    assert cfg["baseline"]["variables"] == [{"name": "age", "label": "age", "type": "continuous"},
                                             {"name": "sex", "label": "sex", "type": "categorical"}]
    assert "# Phases with a usable image (patients): up 6" in text and "position (6 patients)" in text
    # the file works as a --configfile over config.yaml: the merged config plans without errors
    from conftest import merged

    p = preflight.plan(merged(repo_config(), cfg), cache=tmp_path / "s.json")
    assert not p.errors and [v["name"] for v in p.config["baseline"]["variables"]] == ["age", "sex"]


def test_a_failed_jobs_message_reaches_the_console(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("Traceback (most recent call last):\n  File x\nccgrade.errors.AnnotationError: patient 007, phase up, "
                   "file rt.dcm: contour of ROI 'GTV' lies outside the image; fix: export the whole series\n")
    main = tmp_path / "snakemake.log"
    main.write_text(f"[Tue Dec  1]\nError in rule crop_roi:\n    jobid: 3\n    log: {log} (check log file(s) for error "
                    "details)\n    shell:\n        python -m ccgrade.preprocess.crops\n\nShutting down\n")
    assert preflight.job_errors(main) == [
        "rule crop_roi: patient 007, phase up, file rt.dcm: contour of ROI 'GTV' lies outside the image; fix: export "
        "the whole series"]


def test_labelme_and_polygon_files_that_name_no_slice_are_errors(hospital, tmp_path):
    import json

    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    lab = root / "export/patient_001/boxes"
    lab.mkdir()
    good = sorted((root / "export/patient_001/CT").iterdir())[3].name
    (lab / "a.json").write_text(json.dumps({"imagePath": good, "shapes": []}))
    (lab / "b.json").write_text(json.dumps({"imagePath": "IM9999.dcm", "shapes": []}))
    (root / "export/patient_002/poly.json").write_text(json.dumps(
        {"annotations": [{"SOPInstanceUID": "1.2.3.4", "data": {"vertices": [[1, 1], [4, 1], [4, 4]]}}]}))
    sheet["labelme_up"], sheet["polygons_up"] = "", ""
    sheet.loc[0, "labelme_up"] = "export/patient_001/boxes"
    sheet.loc[1, "polygons_up"] = "export/patient_002/poly.json"
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    p = preflight.plan(sheet_cfg(root / "cohort.tsv"), cache=tmp_path / "s.json")
    errors = [str(e) for e in p.errors]
    assert len(errors) == 2, errors
    assert any("patient 001" in e and "1 labelme file(s) name an image that is not a slice" in e and "b.json" in e
               for e in errors)
    assert any("patient 002" in e and "polygon(s) on SOPInstanceUID(s) that are not slices" in e for e in errors)


def test_an_unforeseen_failure_in_one_patients_files_is_that_patients_error(hospital, tmp_path, monkeypatch):
    def boom(rec, cfg):
        if rec["patient_id"] == "003":
            raise RuntimeError("a reader fell over")
        return real(rec, cfg)

    real = survey.survey_patient
    monkeypatch.setattr(survey, "survey_patient", boom)
    p = preflight.plan(sheet_cfg(hospital), cache=None)
    assert [str(e) for e in p.errors] == [
        "ERROR: patient 003: the header survey failed (RuntimeError: a reader fell over)\n    fix: check this patient's "
        "files; if they are fine, please report the message"]


def test_an_mrn_used_as_the_sheet_id_is_an_error_unless_the_headers_say_they_are_de_identified(hospital, tmp_path):
    """Issue 27: a sheet ID equal to the patient's DICOM PatientID (an MRN) named every file under results/ and
    was exempt from the scan. It is an error naming the patient, with the fix; de-identified headers
    (PatientIdentityRemoved YES, as TCIA's) carry a pseudonym already and pass."""
    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    folder = root / sheet.loc[0, "dicom_dir"] if not str(sheet.loc[0, "dicom_dir"]).startswith("/") else \
        sheet.loc[0, "dicom_dir"]
    mrn = str(pydicom.dcmread(next(p for p in sorted(pd.io.common.Path(folder).rglob("*")) if p.is_file()),
                              stop_before_pixels=True).PatientID)
    assert mrn and mrn != sheet.loc[0, "patient_id"]
    sheet.loc[0, "patient_id"] = mrn
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    p = preflight.plan(sheet_cfg(root / "cohort.tsv"), cache=None)
    hits = [e for e in p.errors if "PatientID (often the MRN)" in e.message]
    assert len(hits) == 1 and f"patient {mrn}" in hits[0].message and "study pseudonym" in hits[0].fix, [str(e) for e in p.errors]
    for f in (x for x in pd.io.common.Path(folder).rglob("*") if x.is_file()):
        ds = pydicom.dcmread(f)
        if ds.get("PatientID") == mrn:
            ds.PatientIdentityRemoved = "YES"
            ds.save_as(f)
    p = preflight.plan(sheet_cfg(root / "cohort.tsv"), cache=None)
    assert not [e for e in p.errors if "PatientID" in e.message], [str(e) for e in p.errors]


def test_init_exits_non_zero_when_its_own_preflight_finds_errors(hospital, tmp_path, capsys):
    """Issue 27: `python -m ccgrade.plan.init` exited 0 with errors listed in the config it wrote."""
    from ccgrade.plan import init

    init.main([str(hospital)])  # a clean cohort: exit 0 (no SystemExit)
    assert "Pre-flight: 0 error(s)" in capsys.readouterr().out
    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    sheet.loc[0, "grade"] = "N/A"
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    with pytest.raises(SystemExit) as e:
        init.main([str(root / "cohort.tsv")])
    out = capsys.readouterr()
    assert e.value.code == 1 and "Pre-flight: 1 error(s)" in out.out and "1 error(s)" in out.err


def test_a_left_out_roi_setting_gets_a_fix_that_changes_something():
    """Issue 27: an ROI setting left out for want of annotations was told 'set rois.<name>.source: auto' when
    its source already was auto (a no-op). With auto the fix names the annotations to add; with a fixed
    source it offers auto, and applying that fix feeds the setting."""
    facts = {"imaged": {"cmp": 10}, "outlined": {}, "formats": {"labelme": 10}, "columns": [], "any_images": True}
    c, notes = studyconfig.derive_config(repo_config(), facts)
    tumor = next(n for n in notes if "ROI setting 'tumor'" in n.message)
    assert "source: auto" not in tumor.fix and tumor.fix.startswith("add mask or rtstruct or polygons")
    cfg = repo_config()
    cfg["rois"]["box"]["source"] = "mask"
    _, notes = studyconfig.derive_config(cfg, facts)
    box = next(n for n in notes if "ROI setting 'box'" in n.message)
    assert box.fix.startswith("set rois.box.source: auto")
    cfg["rois"]["box"]["source"] = "auto"  # the fix, applied
    c, notes = studyconfig.derive_config(cfg, facts)
    assert "box" in c["rois"] and not [n for n in notes if n.message.startswith("ROI setting 'box'")]


def test_front_half_targets_take_study_errors_as_warnings():
    assert preflight.front_scopes(set()) == set()  # the default target: everything is needed
    assert preflight.front_scopes({"ingest"}) == {"crops", "study"}
    assert preflight.front_scopes({"results/ingest/series.tsv", "results/volumes/001"}) == {"crops", "study"}
    assert preflight.front_scopes({"ingest", "crops"}) == {"study"}
    assert preflight.front_scopes({"ingest", "results/tables/cui_table3.csv"}) == set()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["one patient", "no annotations"])
def test_one_patient_or_a_cohort_without_annotations_can_be_ingested(hospital, tmp_path, case):
    """Issue 27: the pre-flight refused a one-patient sheet (its splits cannot be filled) and a cohort without
    annotations ('no ROI setting can be fed') even when only the ingest was asked for. Now `snakemake ingest`
    runs (those errors are warnings that say why), and the whole study still refuses with them."""
    from test_workflow import smk

    root = tmp_path / "h"
    shutil.copytree(hospital.parent, root, ignore=shutil.ignore_patterns("_generated"))
    sheet = pd.read_csv(root / "cohort.tsv", sep="\t", dtype=str)
    sheet = sheet.iloc[:1] if case == "one patient" else sheet.drop(columns=["rtstruct_up"])
    sheet.to_csv(root / "cohort.tsv", sep="\t", index=False)
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "study.yaml").write_text(yaml.safe_dump({"cohort": {"sheet": str(root / "cohort.tsv")}}))
    whole = smk(wd, "-n", "--cores", "1", "--configfile", str(wd / "study.yaml"), check=False)
    assert whole.returncode != 0 and "nothing was run" in whole.stdout + whole.stderr
    r = smk(wd, "ingest", "--cores", "2", "--configfile", str(wd / "study.yaml"), check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "(not needed for ingest)" in out and "WARNING" in out
    phases = pd.read_csv(wd / "results/ingest/phase_status.tsv", sep="\t", dtype=str)
    assert set(phases["patient_id"]) == set(sheet["patient_id"]) and (phases.loc[phases["phase"] == "up", "status"]
                                                                      == "ok").all()
    assert (wd / "results/volumes" / sheet["patient_id"].iloc[0] / "up.nii.gz").exists()
    assert not (wd / "results/splits").exists() and not (wd / "results/crops").exists()
    # the real run made what a dry run leaves alone: the key, the record of input paths and the sheet's copy
    assert {p.name for p in (wd / "resources/private").iterdir()} >= {"secret.key", "sources.json", "cohort_sheet.tsv"}
    # the report of what the partial run made (README: name the same target)
    r = smk(wd, "ingest", "--report", "results/report.html", "--configfile", str(wd / "study.yaml"), check=False)
    assert r.returncode == 0 and (wd / "results/report.html").stat().st_size > 0, (r.stdout + r.stderr)[-2000:]


@pytest.mark.parametrize("argv, targets, runs", [
    (["-n", "--cores", "1"], set(), False), (["--lint"], set(), False), (["--list-rules"], set(), False),
    (["crops", "--report", "results/report.html"], {"crops"}, False), (["--dag"], set(), False),
    (["ingest", "--cores", "2", "--configfile", "s.yaml"], {"ingest"}, True), ([], set(), True),
    (["--cores", "8", "--resources", "gpu=1"], set(), True),
])
def test_the_invocation_is_read_with_snakemakes_own_parser(argv, targets, runs):
    from ccgrade.plan import invocation

    inv = invocation.read(argv)
    assert (set(inv.targets), inv.runs_jobs) == (targets, runs)


def test_every_read_only_option_is_one_snakemake_knows():
    from snakemake.cli import get_argument_parser

    from ccgrade.plan import invocation

    assert set(invocation.READ_ONLY_OPTIONS) <= {a.dest for a in get_argument_parser()._actions}


def test_one_series_under_two_patients_is_an_error_and_a_phase_named_wrong_a_warning():
    """A second, unfamiliar layout (issue 28's check: the real TotalSegmentator series copied into two
    patients' folders, its mask given as mask_cmp while the headers make the series parenchymal) showed two
    problems the pre-flight did not name."""
    from ccgrade.plan import survey

    img = {"status": "ok", "series_uid": "1.2.3", "frame_uid": "1.2"}
    surveys = {"007": {"images": {"np": img}, "annotations": {"cmp": ["mask"]}},
               "NA": {"images": {"np": img}, "annotations": {"np": ["mask"]}},
               "009": {"images": {"np": {**img, "series_uid": "1.2.4"}, "cmp": {"status": "ok", "series_uid": "file:x"}},
                       "annotations": {"cmp": ["mask"], "np": ["mask"]}}}
    probs = survey.cross_patient_problems(surveys)
    errors = [p for p in probs if p.level == "error"]
    assert len(errors) == 1 and "patients 007 (np), NA (np) have the same DICOM series" in errors[0].message
    assert errors[0].scope == "study"  # (`snakemake ingest` still runs: the review tables show the copy)
    assert "1.2.3" not in errors[0].message  # (UIDs identify: the console gets none)
    warns = [p for p in probs if p.level == "warning"]
    assert len(warns) == 1 and warns[0].message.startswith("patient 007") and "name its column mask_np" in warns[0].fix
