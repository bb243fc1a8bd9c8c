"""Privacy: keyed pseudonyms, annotations still linking through them, and a scan shown to see inside every
container a results/ file can be (each planted canary is found; clean files give no hit)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from ccgrade.annotations import readers as ann, rtstruct
from ccgrade.errors import PrivacyError
from ccgrade.ingest import patient as ingest
from ccgrade.preprocess import crops
from ccgrade.privacy import pseudonyms as privacy
from ccgrade.report import phiscan
from conftest import PHASES, repo_config

SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
NAME = "Qzxwv^Jorunn"
UID = "1.2.826.0.1.3680043.8.498.77712345678901234567"


# ------------------------------------------------------------------------------------------------ keyer
def test_uid_pseudonym_is_the_keyed_hash_in_the_2_25_form():
    key = privacy.Keyer(SECRET)
    want = "2.25." + str(int(hmac.new(SECRET, b"uid\0" + UID.encode(), hashlib.sha256).hexdigest()[:32], 16))
    assert key.uid(UID) == want
    assert re.fullmatch(r"2\.25\.(0|[1-9]\d*)", want) and len(want) <= 64  # a valid DICOM UID (PS3.5 9.1)
    assert key.uid(UID) == privacy.Keyer(SECRET).uid(UID)  # stable: the DAG stays cached
    assert key.uid(UID) != privacy.Keyer(SECRET[::-1]).uid(UID)  # another study, other pseudonyms
    assert key.uid(UID) != key.uid(UID + "1") and key.uid("") == ""
    assert privacy.Keyer(None).uid(UID) == UID and privacy.Keyer(None).key("file", "a/b") == "a/b"  # keep mode
    assert key.key("file", "S02/IM0001") == hmac.new(SECRET, b"file\0S02/IM0001", hashlib.sha256).hexdigest()[:16]


def test_the_secret_is_made_once_private_and_long(tmp_path):
    p = privacy.ensure_secret(tmp_path / "private" / "secret.key")
    text = p.read_text()
    assert len(text.strip()) == 64 and (p.stat().st_mode & 0o777) == 0o600
    assert (p.parent.stat().st_mode & 0o777) == 0o700
    privacy.ensure_secret(p)
    assert p.read_text() == text  # never replaced
    assert privacy.key_problem(text) == ""
    # weak keys: short, one character repeated, a short unit repeated (issue 27: 32 x "a" was accepted)
    for weak, says in (("abc", "about 5 bits"), ("a" * 32, "about 0 bits of entropy (1 characters repeated 32 times)"),
                       ("c0ffee" * 11, "6 characters repeated 11 times"), ("0123456789abcdef" * 2, "repeated 2 times")):
        (tmp_path / "weak").write_text(weak)
        assert says in privacy.key_problem(weak)
        with pytest.raises(ValueError, match=r"bits of entropy.*secrets.token_hex\(32\)"):
            privacy.Keyer.from_file(tmp_path / "weak")
        with pytest.raises(ValueError, match="under the 128 a key needs"):
            privacy.ensure_secret(tmp_path / "weak")


def test_the_private_folder_and_everything_in_it_is_the_owners_only(tmp_path):
    """resources/private/ held cohort_sheet.tsv at 0644 in a 0755 folder: every start now makes it 0700/0600."""
    d = tmp_path / "private"
    (d / "ingest").mkdir(parents=True)
    os.chmod(d, 0o755)
    (d / "cohort_sheet.tsv").write_text("patient_id\tname\n")
    (d / "ingest" / "P1.tsv").write_text("x")
    os.chmod(d / "cohort_sheet.tsv", 0o644)
    privacy.ensure_secret(d / "secret.key")
    for p in (d, d / "ingest"):
        assert (p.stat().st_mode & 0o777) == 0o700, p
    for p in (d / "cohort_sheet.tsv", d / "ingest" / "P1.tsv", d / "secret.key"):
        assert (p.stat().st_mode & 0o777) == 0o600, p


def test_scrub_replaces_longest_first():
    rep = {"S02/IM0001": "file 1", "S02/IM00010": "file 10", "/data/Doe": "the patient's DICOM folder"}
    assert privacy.scrub("bad S02/IM00010 and S02/IM0001 in /data/Doe", rep) == \
        "bad file 10 and file 1 in the patient's DICOM folder"


# ------------------------------------------------------------------------------------ the scan's views
NEEDLES = [phiscan.Needle("PatientName", "P1", v) for v in phiscan._names(NAME)] + \
    [phiscan.Needle("SOPInstanceUID", "P1", UID), phiscan.Needle("PatientBirthDate", "P1", "19650312")]


def plant(tmp_path, name: str, data: bytes):
    f = tmp_path / "results" / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)
    hits, summary = phiscan.scan(tmp_path / "results", NEEDLES)
    return hits, summary


def test_clean_files_give_no_hit(tmp_path):
    hits, summary = plant(tmp_path, "t.tsv", b"patient_id\tvalue\tseed\nP1\t0.196503121\t2.25.1965031200\n")
    assert hits.empty and summary["files"] == 1
    # a date is a whole token: not the digits of a longer number, but found alone
    hits, _ = plant(tmp_path, "d.tsv", b"born\t19650312\n")
    assert list(hits["what"]) == ["PatientBirthDate"]


@pytest.mark.parametrize("enc", ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_text_in_every_unicode_encoding(tmp_path, enc):
    hits, _ = plant(tmp_path, "x.txt", f"note: jorunn qzxwv was here {UID}".encode(enc))
    assert set(hits["what"]) == {"PatientName", "SOPInstanceUID"} and set(hits["encoding"]) == {enc}
    assert NAME not in hits.to_csv()  # the hit names the kind of value, never the value


def test_base64_inside_html(tmp_path):
    inner = base64.b64encode(f"patient_id\tsop_uid\nP1\t{UID}\n".encode()).decode()
    html = f'<html><a href="data:text/tab-separated-values;charset=utf8;base64,{inner}">t</a></html>'.encode()
    hits, _ = plant(tmp_path, "report.html", html)
    assert list(hits["what"]) == ["SOPInstanceUID"] and "base64" in hits["where"].iloc[0]


def test_utf32_unicode_array_inside_npz(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((2, 4, 4), np.float16), sop_uid=np.array(["", UID]))
    hits, summary = plant(tmp_path, "crops/box/P1/cmp.npz", buf.getvalue())
    assert list(hits["what"]) == ["SOPInstanceUID"] and hits["encoding"].iloc[0] == "utf-32-le"
    assert "sop_uid.npy" in hits["where"].iloc[0] and summary["numeric_bytes_counted"] == 2 * 16 * 2


def test_gzip(tmp_path):
    hits, _ = plant(tmp_path, "x.tsv.gz", gzip.compress("Qzxwv Jorunn\n".encode()))
    assert list(hits["what"]) == ["PatientName"] and "gzip" in hits["where"].iloc[0]


def test_png_text_chunks(tmp_path):
    from PIL import Image, PngImagePlugin

    for chunk in ("text", "ztxt", "itxt"):
        info = PngImagePlugin.PngInfo()
        if chunk == "itxt":
            info.add_itxt("Author", NAME, zip=True)
        else:
            info.add_text("Author", NAME, zip=chunk == "ztxt")
        buf = io.BytesIO()
        Image.new("L", (8, 8)).save(buf, "PNG", pnginfo=info)
        hits, _ = plant(tmp_path, f"f_{chunk}.png", buf.getvalue())
        assert set(hits["what"]) == {"PatientName"}, chunk
        assert {"PNG tEXt": "text", "PNG zTXt": "ztxt", "PNG iTXt": "itxt"}[hits["where"].iloc[0].split(" ", 1)[1]] == chunk
        (tmp_path / "results" / f"f_{chunk}.png").unlink()


def test_pdf_metadata_and_text_drawn_in_a_compressed_stream(tmp_path):
    from ccgrade.outputs import pyplot

    plt = pyplot()
    for what in ("metadata", "drawn"):
        fig, ax = plt.subplots()
        if what == "drawn":
            ax.set_title("Qzxwv Jorunn")
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata={"Author": NAME} if what == "metadata" else {})
        plt.close(fig)
        assert b"Jorunn" not in buf.getvalue() or what == "metadata"  # drawn text is only inside a deflated stream
        hits, _ = plant(tmp_path, "fig.pdf", buf.getvalue())
        assert "PatientName" in set(hits["what"]), what


def test_nifti_header_description(tmp_path):
    img = sitk.Image(4, 4, 4, sitk.sitkInt16)
    img.SetMetaData("ITK_FileNotes", "Qzxwv_Jorunn")  # what ITK writes as the header's descrip field
    f = tmp_path / "m.nii.gz"
    sitk.WriteImage(img, str(f))
    assert gzip.decompress(f.read_bytes())[148:160] == b"Qzxwv_Jorunn"  # descrip: bytes 148-227 (NIfTI-1)
    hits, summary = plant(tmp_path, "volumes/P1/cmp.nii.gz", f.read_bytes())
    assert list(hits["what"]) == ["PatientName"] and "NIfTI header" in hits["where"].iloc[0]
    assert summary["numeric_bytes_counted"] == 4 * 4 * 4 * 2


def test_torch_checkpoint(tmp_path):
    import torch

    buf = io.BytesIO()
    torch.save({"state": {"w": torch.zeros(64)}, "note": f"trained on {UID}"}, buf)
    hits, summary = plant(tmp_path, "models/cell/best.pt", buf.getvalue())
    assert list(hits["what"]) == ["SOPInstanceUID"] and "data.pkl" in hits["where"].iloc[0]
    assert summary["numeric_bytes_counted"] >= 64 * 4  # the tensor storage: counted, not searched


def test_needles_from_headers_paths_and_the_vocabulary(tmp_path, demo_root):
    d = tmp_path / "Qzxwv_Jorunn_19650312" / "Secret Hospital CT"
    d.mkdir(parents=True)
    for i, f in enumerate(sorted((demo_root / "dicom" / "DEMO001" / "S03").iterdir())[:2]):
        shutil.copy(f, d / f"Qzxwv_{i:03d}.dcm")
    src = {"patients": {"DEMO001": {"dicom_dir": str(d.parent), "files": []}}, "root": str(tmp_path), "paths": []}
    needles = phiscan.collect_needles(src, phiscan.vocabulary(repo_config()))
    kinds = {n.kind for n in needles}
    values = {n.value for n in needles}
    ds = pydicom.dcmread(d / "Qzxwv_000.dcm")
    assert {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
            "ReferringPhysicianName", "StudyDate", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
            "FrameOfReferenceUID", "path component"} <= kinds
    assert {"Qzxwv_Jorunn_19650312", "Secret Hospital CT", "Qzxwv_000.dcm", "Qzxwv_000", ds.SOPInstanceUID,
            str(ds.PatientName).split("^")[0]} <= values
    assert "DEMO001" not in values and "plain" not in values and "corticomedullary" not in values
    # the config's words are not searched, but a path in it (the sheet's) is not one of its words
    cfg = dict(repo_config(), cohort={"source": "sheet", "sheet": str(tmp_path / "Qzxwv_Jorunn_19650312" / "c.csv")})
    assert "Qzxwv_Jorunn_19650312" not in phiscan.vocabulary(cfg) and "corticomedullary" in phiscan.vocabulary(cfg)


# --------------------------------------------------------------------- pseudonymised ingest and linking
@pytest.fixture(scope="module")
def both(demo_root, tmp_path_factory):
    """DEMO001 ingested twice, with the originals kept and pseudonymised; an RTSTRUCT drawn on the originals."""
    cfg = repo_config()
    key = privacy.Keyer(SECRET)
    folder = demo_root / "dicom" / "DEMO001"
    out = {}
    for mode in ("keep", "pseudonymise"):
        wd = tmp_path_factory.mktemp(mode)
        res = ingest.index_patient(folder, "DEMO001", cfg["ingest"], PHASES)
        if mode == "pseudonymise":
            labels = ingest.file_labels(folder)
            res, private = ingest.pseudonymise_index(res, key, labels, "DEMO001")
            out["private"] = private
        for n in ("slices", "series", "phases", "exclusions"):
            res[n].to_csv(wd / f"{n}.tsv", sep="\t", index=False)
        ingest.convert_patient(folder, "DEMO001", wd, wd / "vol", key=key if mode == "pseudonymise" else None)
        out[mode] = (res, wd)
    res, wd = out["keep"]
    img = sitk.ReadImage(str(wd / "vol" / "cmp.nii.gz"))
    table = pd.read_csv(wd / "vol" / "cmp.slices.tsv", sep="\t", dtype={"sop_uid": str})
    uid = res["phases"].set_index("phase").loc["cmp", "series_uid"]
    first = res["slices"][res["slices"]["series_uid"] == uid].iloc[0]
    mask = ann.read_mask(demo_root / "annotations" / "DEMO001" / "cmp" / "mask.nii.gz", img, 1, patient="DEMO001",
                         phase="cmp")
    rt = wd / "rt_cmp.dcm"
    rtstruct.write_rtstruct(rt, mask, img, table, series_uid=uid, study_uid=first.study_uid, frame_uid=first.frame_uid,
                            patient_id="DEMO001", roi_name="GTV tumour")
    out["rt"], out["key"] = rt, key
    return out


def test_pseudonymised_index_holds_no_original_uid_path_or_clock_time(both, demo_root):
    keep, _ = both["keep"]
    pz, wd = both["pseudonymise"]
    text = "".join((wd / f"{n}.tsv").read_text() for n in ("slices", "series", "phases", "exclusions"))
    text += "".join(p.read_text() for p in (wd / "vol").glob("*.tsv"))
    originals = set(keep["slices"][["sop_uid", "series_uid", "study_uid", "frame_uid"]].astype(str).to_numpy().ravel())
    assert len(originals) > 50 and not [u for u in originals if u in text]
    assert "S02" not in text and "IM00" not in text  # no folder or file name
    key = both["key"]
    assert list(pz["slices"]["sop_uid"]) == [key.uid(u) for u in keep["slices"]["sop_uid"]]
    # labels: the file's index in the folder and what a viewer shows
    assert re.fullmatch(r"file \d+ \(series \d+, instance \d+\)", pz["slices"]["file"].iloc[0])
    # times are offsets from the patient's first acquisition; the bolus delay is unchanged
    assert pz["slices"]["acq_s"].min() == 0
    d_keep = (keep["slices"]["acq_s"] - keep["slices"]["bolus_s"]).dropna()
    d_pz = (pz["slices"]["acq_s"] - pz["slices"]["bolus_s"]).dropna()
    np.testing.assert_allclose(d_pz.to_numpy(), d_keep.to_numpy())
    assert (pz["phases"]["phase"] == keep["phases"]["phase"]).all()
    # the private lookup maps every pseudonym back
    look = both["private"]
    sop = look[look["kind"] == "sop_uid"].set_index("pseudonym")["original"]
    assert sop[key.uid(keep["slices"]["sop_uid"].iloc[3])] == keep["slices"]["sop_uid"].iloc[3]
    files = look[look["kind"] == "file"].set_index("pseudonym")["original"]
    assert files[pz["slices"]["file"].iloc[5]] == keep["slices"]["file"].iloc[5]
    # the volumes are the same voxels
    for ph in PHASES:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(both["keep"][1] / "vol" / f"{ph}.nii.gz")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(wd / "vol" / f"{ph}.nii.gz")))
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("roi_name, fmt", [("box", "labelme"), ("centroid", "polygons"), ("tumor", "rtstruct")])
def test_annotations_on_original_uids_and_names_link_to_pseudonymised_slices(both, demo_root, tmp_path, roi_name, fmt):
    cfg = repo_config()
    ann_dir = demo_root / "annotations" / "DEMO001" / "cmp"
    path = {"labelme": ann_dir / "labelme", "polygons": ann_dir / "polygons.json", "rtstruct": both["rt"]}[fmt]
    roi = dict(cfg["rois"][roi_name], source=fmt, size=32)
    if roi_name == "centroid":
        roi["box_px"] = 32
    sources = {"cmp": {fmt: str(path)}}
    made = {}
    for mode in ("keep", "pseudonymise"):
        key = both["key"] if mode == "pseudonymise" else None
        man = crops.crop_patient("DEMO001", roi_name, roi, cfg["windows"][roi["window"]], ["cmp"], ["cmp"],
                                 both[mode][1] / "vol", sources, 1, tmp_path / mode, key=key)
        assert man.set_index("phase").loc["cmp", "status"] == "ok", man.to_dict("records")
        made[mode] = np.load(tmp_path / mode / "cmp.npz")
    np.testing.assert_array_equal(made["keep"]["images"], made["pseudonymise"]["images"])
    assert len(made["keep"]["images"]) > 0
    assert list(made["pseudonymise"]["sop_uid"]) == [both["key"].uid(u) for u in made["keep"]["sop_uid"]]


def test_a_phase_map_may_name_the_pseudonym(both, demo_root):
    cfg = repo_config()
    pz, _ = both["pseudonymise"]
    keep, _ = both["keep"]
    up = keep["phases"].set_index("phase").loc["up", "series_uid"]
    mapping = pd.DataFrame([{"patient_id": "DEMO001", "series_instance_uid": both["key"].uid(up), "phase": "ep"},
                            {"patient_id": "DEMO001", "series_instance_uid": keep["phases"].set_index("phase").loc[
                                "ep", "series_uid"], "phase": "up"}])
    res = ingest.index_patient(demo_root / "dicom" / "DEMO001", "DEMO001", cfg["ingest"], PHASES, mapping,
                               key=both["key"])
    ph = res["phases"].set_index("phase")
    assert ph.loc["ep", "series_uid"] == up and ph.loc["up", "status"] == "ok"


def test_a_job_error_names_the_file_by_its_label(both, demo_root, tmp_path, capsys):
    folder = tmp_path / "Qzxwv_Jorunn"
    shutil.copytree(demo_root / "dicom" / "DEMO001", folder)
    pz, wd = both["pseudonymise"]
    bad = sorted((folder / "S03").iterdir())[4]
    bad.write_bytes(bad.read_bytes()[:-500])  # its pixel data cut short after the index was made
    labels = ingest.file_labels(folder)
    with pytest.raises(SystemExit):
        privacy.run_scrubbed(lambda: ingest.convert_patient(folder, "DEMO001", wd, tmp_path / "vol", key=both["key"]),
                             labels)
    err = capsys.readouterr().err
    assert "ccgrade.errors.DicomError: patient DEMO001" in err and re.search(r"file \d+", err)
    assert "Qzxwv" not in err and "IM00" not in err and "S03" not in err


def test_public_config_hides_the_users_paths_and_keep_is_a_shorthand():
    from ccgrade.plan import preflight

    cfg = repo_config()
    cfg["cohort"]["sheet"] = "/data/Qzxwv_Jorunn/cohort.csv"
    cfg["ingest"]["phase_map"] = "/data/Qzxwv_Jorunn/map.tsv"
    cfg.setdefault("predict", {})["sheet"] = "/data/Qzxwv_Jorunn/new.csv"  # (issue 27: these two reached the report)
    cfg.setdefault("external", {})["sheet"] = "/data/Qzxwv_Jorunn/centre_b.csv"
    pub = privacy.public_config(cfg)
    assert "Qzxwv" not in json.dumps(pub) and pub["cohort"]["sheet"] == "<cohort.sheet>"
    assert pub["ingest"]["keywords"] == cfg["ingest"]["keywords"] and cfg["cohort"]["sheet"].startswith("/data")
    demo = repo_config()
    for given, want in ((None, "pseudonymise"), ("keep", "keep"), ({"mode": "keep"}, "keep")):
        c = dict(demo, privacy=given) if given is not None else {k: v for k, v in demo.items() if k != "privacy"}
        plan = preflight.plan(c, cache=None)
        assert not [p for p in plan.problems if p.level == "error"], plan.problems
        assert plan.config["privacy"] == {"mode": want, "dir": "resources/private"}
    bad = preflight.plan(dict(demo, privacy={"mode": "anonymise"}), cache=None)
    assert any("privacy" in p.message for p in bad.problems if p.level == "error")


def test_a_series_without_uid_is_keyed_by_a_pseudonym_not_its_folder(demo_root, tmp_path):
    folder = tmp_path / "Qzxwv_Jorunn_19650312"
    shutil.copytree(demo_root / "dicom" / "DEMO001", folder)
    (folder / "S03").rename(folder / "Secret Hospital CT")
    for f in (folder / "Secret Hospital CT").iterdir():
        ds = pydicom.dcmread(f)
        del ds.SeriesInstanceUID
        ds.save_as(f)
    key = privacy.Keyer(SECRET)
    res = ingest.index_patient(folder, "DEMO001", repo_config()["ingest"], PHASES)
    assert any(str(u).startswith("nouid:Secret Hospital CT") for u in res["series"]["series_uid"])
    pz, _ = ingest.pseudonymise_index(res, key, ingest.file_labels(folder), "DEMO001")
    text = "".join(t.to_csv(sep="\t") for t in pz.values())
    assert "Secret Hospital" not in text and "Qzxwv" not in text
    assert pz["phases"].set_index("phase").loc["cmp", "status"] == "ok"
    assert pz["phases"].set_index("phase").loc["cmp", "series_uid"].startswith("2.25.")


def test_each_patient_is_searched_below_its_own_cohorts_root(tmp_path):
    """An external centre's patients lie below their own root: the folders above it (the study's, e.g. the
    demo's `demo_external`) are not patient values, the patient's own folders and files are."""
    from ccgrade.report import phiscan

    for root, pid in (("main_cohort", "P1"), ("second_site/C", "X1")):
        f = tmp_path / root / "patients" / f"{pid}_Jones" / "scan.nii.gz"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"")
    src = {"patients": {"P1": {"dicom_dir": "", "files": [str(tmp_path / "main_cohort/patients/P1_Jones/scan.nii.gz")]},
                        "X1": {"dicom_dir": "", "files": [str(tmp_path / "second_site/C/patients/X1_Jones/scan.nii.gz")],
                               "root": str(tmp_path / "second_site/C")}},
           "root": str(tmp_path / "main_cohort"), "paths": [], "own": []}
    values = {(n.patient, n.value) for n in phiscan.collect_needles(src)}
    assert ("X1", "X1_Jones") in values and ("P1", "P1_Jones") in values
    assert not {v for _, v in values} & {"second_site", "main_cohort"}


def test_a_weak_key_is_a_preflight_error_with_the_command_that_makes_a_good_one(tmp_path):
    from ccgrade.plan import preflight

    settings = {"mode": "pseudonymise", "dir": str(tmp_path)}
    assert preflight.key_problems(settings) == []  # none yet: the run makes one
    (tmp_path / "secret.key").write_text("a" * 32 + "\n")
    (p,) = preflight.key_problems(settings)
    assert p.level == "error" and "about 0 bits of entropy" in p.message and "secrets.token_hex(32)" in p.fix
    assert preflight.key_problems({**settings, "mode": "keep"}) == []


def test_a_name_and_mrn_in_the_series_description_never_reach_the_index_and_the_scan_looks_for_them(
        demo_root, tmp_path):
    """Issue 27: with the name tags blanked (an anonymiser's usual outcome) and the name and MRN typed into
    SeriesDescription, the pseudonymised index holds neither (wherever the description is quoted: the series
    table, the phase evidence, the reconstruction choice) and the phase is still found from the imaging words;
    the scan's needles hold them, so a copy made elsewhere is a hit."""
    folder = tmp_path / "P1"
    shutil.copytree(demo_root / "dicom" / "DEMO001", folder)
    for f in sorted((folder / "S03").iterdir()):
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.SeriesDescription = "", "QZXWV^JORUNN MRN 80417733 arterial 5mm"
        ds.StudyDescription, ds.ProtocolName = "CT abdomen for Jorunn Qzxwv", "Renal Qzxwv protocol"
        ds.save_as(f)
    cfg = repo_config()
    key = privacy.Keyer(SECRET)
    res = ingest.index_patient(folder, "P1", cfg["ingest"], PHASES)
    assert res["phases"].set_index("phase").loc["cmp", "status"] == "ok"  # the word "arterial" still counts
    pz, private = ingest.pseudonymise_index(res, key, ingest.file_labels(folder), "P1",
                                            words=privacy.text_words(cfg["ingest"]))
    text = "\n".join(pz[n].to_csv(sep="\t") for n in ("slices", "series", "phases", "exclusions")).lower()
    for secret in ("qzxwv", "jorunn", "80417733"):
        assert secret not in text, secret
    agent = str(pydicom.dcmread(sorted((folder / "S03").iterdir())[0]).ContrastBolusAgent).lower()
    assert agent and agent not in text and "contrast agent given" in text  # (the phase evidence quoted it)
    safe = pz["series"].set_index("phase").loc["cmp", "series_description"]
    assert re.fullmatch(r"MRN arterial 5mm #[0-9a-f]{6}|arterial 5mm #[0-9a-f]{6}", safe), safe
    assert (pz["slices"]["contrast_agent"].isin(["", "given"])).all()
    # the lookup keeps the original, outside results/
    look = private[private["kind"] == "series_description"].set_index("pseudonym")["original"]
    assert look[safe] == "QZXWV^JORUNN MRN 80417733 arterial 5mm"
    # the scan: every free-text attribute's words that are not imaging vocabulary
    src = {"patients": {"P1": {"dicom_dir": str(folder), "files": []}}, "root": str(tmp_path), "paths": []}
    values = {n.value.lower() for n in phiscan.collect_needles(src, phiscan.vocabulary(cfg))}
    assert {"qzxwv^jorunn", "80417733", "jorunn qzxwv", "renal qzxwv"} <= values
    assert "arterial" not in values and "arterial 5mm" not in values
    hit = tmp_path / "results" / "copy.tsv"
    hit.parent.mkdir()
    hit.write_text("series\tJorunn Qzxwv\n")
    hits, _ = phiscan.scan(tmp_path / "results", phiscan.collect_needles(src, phiscan.vocabulary(cfg)))
    assert len(hits) and set(hits["what"]) <= {"free text StudyDescription", "free text SeriesDescription"}, hits
    assert "Jorunn" not in hits.to_csv()  # a hit names the kind, never the value


def test_a_report_page_with_a_hit_is_moved_out_of_results(tmp_path):
    """Issue 27: the report scan caught a leak but left the page in results/. With --quarantine (the
    privacy_report rule gives it) the page is moved, owner-only, and the error says where."""
    res = tmp_path / "results"
    res.mkdir()
    (res / "report.html").write_text("<html><p>patient Qzxwv^Jorunn</p></html>")
    (res / "table.csv").write_text("clean\n")
    src = tmp_path / "sources.json"
    src.write_text(json.dumps({"patients": {}, "paths": [], "root": str(tmp_path)}))
    needles_from = tmp_path / "d"
    needles_from.mkdir()
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Qzxwv^Jorunn"
    ds.save_as(needles_from / "a.dcm")
    src.write_text(json.dumps({"patients": {"P1": {"dicom_dir": str(needles_from), "files": []}}, "paths": [],
                               "root": str(tmp_path)}))
    q = tmp_path / "private" / "quarantine"
    with pytest.raises(PrivacyError, match=r"moved out of results/ to .*quarantine: report.html"):
        phiscan.main(["--results", str(res), "--sources", str(src), "--out", str(res / "scan.tsv"),
                      "--only", str(res / "report.html"), "--quarantine", str(q)])
    assert not (res / "report.html").exists() and (q / "report.html").exists() and (res / "table.csv").exists()
    assert (q.stat().st_mode & 0o777) == 0o700 and ((q / "report.html").stat().st_mode & 0o777) == 0o600
