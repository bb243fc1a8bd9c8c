import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from ccgrade.errors import DicomError
from ccgrade.ingest import index as ingest_index, patient as ingest, series as ingest_series, volumes as ingest_volumes
from conftest import PHASES, SHARED_DATA, ingest_to, repo_config, shared_data

CFG = repo_config()["ingest"]
FOLDER = {"up": "S02", "cmp": "S03", "np": "S04", "ep": "S05"}


def run_index(folder, pid="DEMO001", cfg=CFG, phases=PHASES, mapping=None):
    return ingest.index_patient(folder, pid, cfg, phases, mapping)


def status(res):
    return res["phases"].set_index("phase")


def test_demo_patient_phases_and_methods(demo_root):
    res = run_index(demo_root / "dicom" / "DEMO001")
    st = status(res)
    assert (st["status"] == "ok").all() and (st["n_slices"] == 14).all()
    s = res["series"].set_index("phase")
    for ph, folder in FOLDER.items():
        files = res["slices"][res["slices"]["series_uid"] == s.loc[ph, "series_uid"]]["file"]
        assert all(f.startswith(folder + "/") for f in files)
    assert set(s["method"]) <= {"description", "contrast-agent", "bolus-timing", "acquisition-order"}
    assert res["exclusions"].empty
    # no PHI in any index table
    blob = "".join(df.to_csv() for df in res.values())
    ds = pydicom.dcmread(next((demo_root / "dicom" / "DEMO001" / "S02").iterdir()))
    for phi in (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.InstitutionName, ds.AccessionNumber):
        assert phi not in blob


def test_phase_by_timing_when_descriptions_say_nothing(patient_copy):
    for ph, folder in FOLDER.items():
        for f in (patient_copy / folder).iterdir():
            ds = pydicom.dcmread(f)
            ds.SeriesDescription = f"Series {folder}"
            ds.save_as(f)
    res = run_index(patient_copy)
    s = res["series"].set_index("phase")
    assert set(s.index) == set(PHASES)
    assert s.loc["up", "method"] == "contrast-agent"
    assert {s.loc[p, "method"] for p in ("cmp", "np", "ep")} == {"bolus-timing"}
    # without bolus start time, acquisition order fills cmp < np < ep
    for folder in FOLDER.values():
        for f in (patient_copy / folder).iterdir():
            ds = pydicom.dcmread(f)
            if "ContrastBolusStartTime" in ds:
                del ds.ContrastBolusStartTime
            ds.save_as(f)
    s = run_index(patient_copy)["series"].set_index("phase")
    assert [s.loc[p, "method"] for p in ("cmp", "np", "ep")] == ["acquisition-order"] * 3
    assert s.loc["cmp", "acq_s"] < s.loc["np", "acq_s"] < s.loc["ep", "acq_s"]


def test_phase_map_overrides(demo_root):
    res = run_index(demo_root / "dicom" / "DEMO001")
    uid = res["series"].set_index("phase").loc["np", "series_uid"]
    mapping = pd.DataFrame({"patient_id": ["*"], "series_instance_uid": [uid], "phase": ["ep"]})
    res2 = run_index(demo_root / "dicom" / "DEMO001", mapping=mapping)
    st = status(res2)
    assert st.loc["np", "status"] == "excluded" and "missing phase" in st.loc["np", "reason"]
    # mapping the wanted series suffices: the series the heuristics called excretory is set aside, not a rival
    assert st.loc["ep", "status"] == "ok" and st.loc["ep", "series_uid"] == uid
    old_ep = res["series"].set_index("phase").loc["ep", "series_uid"]
    row = res2["series"].set_index("series_uid").loc[old_ep]
    assert row["method"] == "superseded" and "phase ep given to series #4 by the phase map" in row["evidence"]


def _files(folder):
    return sorted(folder.iterdir(), key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def test_truncated_file_excludes_phase_naming_file(patient_copy):
    f = _files(patient_copy / "S03")[5]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    res = run_index(patient_copy)
    ex = res["exclusions"]
    row = ex[ex["phase"] == "cmp"].iloc[0]
    assert row["patient_id"] == "DEMO001" and "truncated file S03/" + f.name in row["reason"]
    assert row["file"] == f"S03/{f.name}"
    assert status(res).loc["up", "status"] == "ok"
    with pytest.raises(DicomError) as e:
        run_index(patient_copy, cfg={**CFG, "on_bad_series": "error"})
    assert "patient DEMO001" in str(e.value) and "phase cmp" in str(e.value) and f.name in str(e.value)


def test_header_truncation_is_unreadable_row(patient_copy):
    f = _files(patient_copy / "S02")[0]
    f.write_bytes(f.read_bytes()[:300])
    ex = run_index(patient_copy)["exclusions"]
    assert any(("unreadable" in r or "truncated" in r) and f.name in (fl + r) for r, fl in zip(ex["reason"], ex["file"]))


def test_missing_slice_detected(patient_copy):
    _files(patient_copy / "S04")[6].unlink()
    st = status(run_index(patient_copy))
    assert st.loc["np", "status"] == "excluded"
    assert "missing slice(s): gap of 10.00 mm" in st.loc["np", "reason"]


def test_inconsistent_spacing_duplicate_and_oblique(patient_copy):
    fs = _files(patient_copy / "S02")
    ds = pydicom.dcmread(fs[3]); ds.ImagePositionPatient[2] += 1.7; ds.save_as(fs[3])
    fs = _files(patient_copy / "S03")
    ds = pydicom.dcmread(fs[4]); ds.ImagePositionPatient = pydicom.dcmread(fs[5]).ImagePositionPatient; ds.save_as(fs[4])
    for f in (patient_copy / "S05").iterdir():
        ds = pydicom.dcmread(f); c, s = np.cos(0.3), np.sin(0.3)
        ds.ImageOrientationPatient = [1, 0, 0, 0, c, s]; ds.save_as(f)
    st = status(run_index(patient_copy))
    assert "inconsistent slice spacing" in st.loc["up", "reason"]
    assert "duplicate slice positions" in st.loc["cmp", "reason"]
    assert "non-axial orientation" in st.loc["ep", "reason"]
    assert st.loc["np", "status"] == "ok"


def test_missing_phase_and_localizer(patient_copy):
    shutil.rmtree(patient_copy / "S05")
    src = next((patient_copy / "S02").iterdir())
    ds = pydicom.dcmread(src)
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesDescription = "Topogram 0.6"
    (patient_copy / "scout").mkdir()
    ds.save_as(patient_copy / "scout" / "scout.dcm")
    res = run_index(patient_copy)
    assert status(res).loc["ep", "reason"].startswith("missing phase")
    ser = res["series"].set_index("series_description")
    assert ser.loc["Topogram 0.6", "status"] == "ignored" and "localizer" in ser.loc["Topogram 0.6", "reason"]
    assert (status(res).drop("ep")["status"] == "ok").all()


def test_empty_folder_is_recorded(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    res = run_index(tmp_path / "empty", pid="P0")
    assert "no readable DICOM" in res["exclusions"]["reason"].iloc[0]
    assert (res["phases"]["status"] == "excluded").all()


def test_convert_matches_independent_pixel_read(demo_root, tmp_path):
    folder = demo_root / "dicom" / "DEMO002"
    ingest_to(folder, "DEMO002", tmp_path)
    img = sitk.ReadImage(str(tmp_path / "vol" / "cmp.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    dss = sorted((pydicom.dcmread(f) for f in (folder / "S03").iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    ref = np.stack([d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept) for d in dss])
    np.testing.assert_array_equal(arr, ref)
    assert arr.dtype == np.int16
    assert np.allclose(img.GetOrigin(), [float(v) for v in dss[0].ImagePositionPatient])
    assert np.allclose(img.GetSpacing(), [300 / 96, 300 / 96, 5.0])
    tab = pd.read_csv(tmp_path / "vol" / "cmp.slices.tsv", sep="\t", dtype=str)
    assert tab["sop_uid"].tolist() == [d.SOPInstanceUID for d in dss]
    # plausible HU: aorta enhanced in the corticomedullary phase, fat negative
    assert arr.min() >= -1024 and (arr < -50).any() and (arr > 200).any()


@pytest.mark.parametrize("pseudonymise", [False, True])
def test_the_one_job_command_writes_what_the_two_stages_write(demo_root, tmp_path, pseudonymise):
    """``ingest patient`` (the pipeline's one job a patient, which reads the files' labels once for both
    stages) equals ``index`` then ``convert`` run apart, with the privacy key too."""
    import json

    from conftest import TEST_SECRET

    folder = str(demo_root / "dicom" / "DEMO003")
    common = ["--patient", "DEMO003", "--dicom-dir", folder]
    if pseudonymise:
        (tmp_path / "secret.key").write_text(TEST_SECRET + "\n")
        common += ["--secret", str(tmp_path / "secret.key")]
    idx = ["--ingest", json.dumps(CFG), "--phases", ",".join(PHASES)]
    private = (lambda n: ["--private", str(tmp_path / n)]) if pseudonymise else (lambda n: [])
    ingest.main(["patient", *common, *idx, *private("a.tsv"), "--index-dir", str(tmp_path / "a"),
                 "--volumes", str(tmp_path / "a" / "v")])
    ingest.main(["index", *common, *idx, *private("b.tsv"), "--outdir", str(tmp_path / "b")])
    ingest.main(["convert", *common, "--index-dir", str(tmp_path / "b"), "--outdir", str(tmp_path / "b" / "v")])
    names = ["slices.tsv", "series.tsv", "phases.tsv", "exclusions.tsv", *(f"v/{p}.slices.tsv" for p in PHASES)]
    for n in names:
        assert (tmp_path / "a" / n).read_text() == (tmp_path / "b" / n).read_text(), n
    for p in PHASES:
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / d / "v" / f"{p}.nii.gz"))) for d in "ab")
        assert a.shape[0] == 14 and np.array_equal(a, b), p
    if pseudonymise:
        assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
        assert "file 1 (" in (tmp_path / "a" / "slices.tsv").read_text()  # the files named by their labels


def test_pydicom_ct5n_ok_and_ct2_gap_rejected(tmp_path):
    base = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
    ok = run_index(base / "98892001" / "CT5N", "PYD1", phases=["up"], cfg={**CFG, "keywords": {"up": [""]}})
    ser = ok["series"]
    assert ser["status"].tolist() == ["candidate"] and int(ser["n_files"].iloc[0]) == 5
    gap = ingest_series.summarise_series(ingest_index.index_folder(base / "77654033" / "CT2", "PYD2")[0], 0.01)
    assert gap["status"].tolist() == ["bad"] and "missing slice" in gap["reason"].iloc[0]


@pytest.mark.realdata
def test_real_siemens_jpeg2000_series_matches_nifti(tmp_path):
    folder = shared_data("totalseg", "dicom")
    ref = sitk.ReadImage(str(shared_data("totalseg", "example_seg_dicom.nii.gz")))
    slices, problems = ingest_index.index_folder(folder, "TS1")
    assert not problems and slices["transfer_syntax"].eq("1.2.840.10008.1.2.4.90").all()
    ser = ingest_series.summarise_series(slices, 0.01)
    assert ser["status"].tolist() == ["candidate"], ser["reason"].tolist()
    img, _ = ingest_volumes.read_volume(folder, slices, "TS1", "np")
    assert img.GetSize() == ref.GetSize()
    assert np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-3)
    # the NIfTI export stores rows flipped (RAS-style direction): compare the physical voxel-centre corners
    def corners(im):
        n = np.array(im.GetSize()) - 1
        idx = [(i, j, k) for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])]
        return sorted(tuple(np.round(im.TransformIndexToPhysicalPoint([int(v) for v in c]), 2)) for c in idx)
    assert np.allclose(corners(img), corners(ref), atol=1e-2)
    arr = sitk.GetArrayFromImage(img)
    assert -1100 < arr.min() < -900 and arr.max() > 300  # air and bone/contrast in HU after rescale -1024


def _implicit_12bit_series(folder: Path, n: int = 3) -> np.ndarray:
    """CT_small re-saved as an implicit-VR series with BitsStored 12, PixelRepresentation 1 and negative
    stored values (as older scanners write them); returns the HU it must give (slope x stored + intercept)."""
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    base = src.pixel_array.astype(np.int32)
    series, hu = generate_uid(), []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        stored = np.clip(base - 1200 + 40 * k, -2048, 2047).astype(np.int16)  # air-like values below zero
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -24
        ds.PixelData = (stored.astype(np.uint16) & 0x0FFF).tobytes()  # 12-bit two's complement, high bits zero
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [5.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SeriesDescription, ds.InstanceNumber = "plain", k + 1
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(folder / f"im{k}", implicit_vr=True, little_endian=True)
        hu.append(stored.astype(np.int32) - 24)
    return np.stack(hu)


def test_implicit_vr_12bit_signed_series_reads_the_right_hu(tmp_path):
    """Implicit VR gives no VR in the file: BitsStored (US) must still read as 12, not 0, and the stored
    -1000 must give -1024 HU, not 3072."""
    want = _implicit_12bit_series(tmp_path / "ct")
    f = sorted((tmp_path / "ct").iterdir())[0]
    assert pydicom.dcmread(f).is_implicit_VR
    rec = ingest_index.read_header(f, f.parent, "P")
    assert (rec["bits_stored"], rec["pixel_representation"], rec["bits_allocated"]) == (12, 1, 16)
    assert (rec["rows"], rec["cols"], rec["intercept"], rec["slope"]) == (128, 128, -24.0, 1.0)
    res, vol = ingest_to(tmp_path / "ct", "P", tmp_path / "work")
    assert status(res).loc["up", "status"] == "ok"
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(vol / "up.nii.gz")))
    assert arr.min() < -900  # the negative stored values survived
    np.testing.assert_array_equal(arr, want)


@pytest.mark.realdata
def test_dcm2niix_12bit_and_transfer_syntax_files_read_as_their_authors_state():
    """dcm_qa: the 0x0F0F/0xFFFF stripes read 3855 and 4095 (unsigned: unused high bits masked off) or
    -241 and -1 (signed); the original 12-bit scan stays within 0..4095; the nine transfer syntaxes of
    one image all read equal to the explicit-VR file. Headers index with BitsStored 12."""
    bits = shared_data("dcm_qa", "12bit")
    for name in ("12bitUnsigned.dcm", "12bitUnsigned_0x0F0F.dcm", "12bitSigned_0x0F0F.dcm"):
        ds = pydicom.dcmread(bits / name)
        raw = np.frombuffer(ds.PixelData, "<u2").reshape(ds.Rows, ds.Columns).astype(np.int32)
        low = raw & 0x0FFF  # PS3.5 8.1.1: only bits 0..11 (HighBit 11) hold the value
        want = np.where(low >= 2048, low - 4096, low) if ds.PixelRepresentation else low
        rec = ingest_index.read_header(bits / name, bits, "P")
        px = ingest_volumes.read_pixels(bits / name, pd.Series(rec)).astype(np.int32)
        np.testing.assert_array_equal(px, want, err_msg=name)
        assert rec["bits_stored"] == 12
        if "0x0F0F" in name:  # the stripes: 3855 and 4095 unsigned, -241 and -1 signed
            stripe = {0x0F0F: -241, 0xFFFF: -1} if ds.PixelRepresentation else {0x0F0F: 3855, 0xFFFF: 4095}
            for value, read in stripe.items():
                assert (raw == value).any() and (px[raw == value] == read).all(), (name, value)
        else:
            assert raw.max() == 4379 and px.max() == 2908  # overlay bits above bit 11 are not image data
    ts = shared_data("dcm_qa", "ts")
    ref = ingest_volumes.read_pixels(ts / "1.dcm", pd.Series(ingest_index.read_header(ts / "1.dcm", ts, "P"))).astype(np.int32)
    for k in range(1, 10):
        f = ts / f"{k}.dcm"
        rec = ingest_index.read_header(f, ts, "P")
        assert (rec["bits_stored"], rec["rows"], rec["cols"]) == (12, ref.shape[0], ref.shape[1]), f
        assert not ingest_series.codec_problem(rec["transfer_syntax"]), f
        np.testing.assert_array_equal(ingest_volumes.read_pixels(f, pd.Series(rec)).astype(np.int32), ref, err_msg=str(f))


def test_volume_files_as_phase_images(demo_root, tmp_path):
    """NIfTI and NRRD volumes given per phase replace the DICOM heuristics for their phase; the result is
    voxel-identical to the DICOM route; bad volumes become exclusion rows naming the file."""
    folder = demo_root / "dicom" / "DEMO002"
    ingest_to(folder, "DEMO002", tmp_path, "dicom_route")
    img = sitk.ReadImage(str(tmp_path / "dicom_route" / "cmp.nii.gz"))
    sitk.WriteImage(img, str(tmp_path / "cmp.nrrd"))
    sitk.WriteImage(sitk.Cast(img, sitk.sitkFloat32), str(tmp_path / "np.nii.gz"))  # float storage, integral values
    flat = sitk.GetImageFromArray(np.zeros((1, 8, 8), np.int16))
    sitk.WriteImage(flat, str(tmp_path / "flat.nii.gz"))
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    images = {"cmp": str(tmp_path / "cmp.nrrd"), "np": str(tmp_path / "np.nii.gz"), "up": str(tmp_path / "flat.nii.gz"),
              "ep": str(tmp_path / "junk.nii.gz")}
    res, _ = ingest_to(None, "DEMO002", tmp_path / "files", images=images)
    st = status(res)
    assert st.loc["cmp", "status"] == "ok" and st.loc["cmp", "series_uid"] == "file:cmp.nrrd"
    assert st.loc["np", "n_slices"] == img.GetSize()[2] and st.loc["np", "spacing"] == pytest.approx(5.0)
    assert "not a 3D volume" in st.loc["up", "reason"] and "cannot read image junk.nii.gz" in st.loc["ep", "reason"]
    ex = res["exclusions"].set_index("phase")
    assert ex.loc["up", "file"] == "flat.nii.gz" and ex.loc["ep", "file"] == "junk.nii.gz"
    out = tmp_path / "files"
    for ph in ("cmp", "np"):
        a = sitk.ReadImage(str(out / "vol" / f"{ph}.nii.gz"))
        assert a.GetPixelID() == sitk.sitkInt16  # integral HU stored as int16 again
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(img))
        assert np.allclose(a.GetOrigin(), img.GetOrigin()) and np.allclose(a.GetSpacing(), img.GetSpacing())
    tab = pd.read_csv(out / "vol" / "cmp.slices.tsv", sep="\t", keep_default_na=False)
    ref = pd.read_csv(tmp_path / "dicom_route" / "cmp.slices.tsv", sep="\t")
    np.testing.assert_allclose(tab["position_mm"], ref["position_mm"])
    # mixing: DICOM folder for three phases, a volume for one
    mixed = ingest.index_patient(folder, "DEMO002", CFG, PHASES, images={"cmp": str(tmp_path / "cmp.nrrd")})
    assert (status(mixed)["status"] == "ok").all() and status(mixed).loc["cmp", "series_uid"] == "file:cmp.nrrd"
    assert not status(mixed).loc["np", "series_uid"].startswith("file:")


def _reference_header(f: Path) -> dict:
    """The index fields as a plain full pydicom read gives them (keyword access, every element converted)."""
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    # anonymised files may blank the UIDs: the index falls back to the file name / a folder-based key
    return {"sop_uid": str(ds.get("SOPInstanceUID", "")) or f.name,
            "series_uid": str(ds.get("SeriesInstanceUID", "")) or
            f"nouid:.:{ds.get('SeriesNumber') or ''}:{ds.get('SeriesDescription', '')}",
            "rows": int(ds.Rows), "cols": int(ds.Columns), "bits_stored": int(ds.BitsStored),
            "bits_allocated": int(ds.BitsAllocated), "pixel_representation": int(ds.PixelRepresentation),
            "slope": float(ds.get("RescaleSlope", 1)), "intercept": float(ds.get("RescaleIntercept", 0)),
            "series_description": str(ds.get("SeriesDescription", "")),
            "ipp_z": float(ds.ImagePositionPatient[2]) if "ImagePositionPatient" in ds else np.nan,
            "row_spacing": float(ds.PixelSpacing[0]) if "PixelSpacing" in ds else np.nan,
            "modality": str(ds.Modality), "image_type": "\\".join(ds.get("ImageType", []))}


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "MR_small_expb.dcm", "JPEG2000.dcm"])
def test_header_index_equals_a_full_pydicom_read(name):
    """Across explicit/implicit VR, big/little endian and compressed files."""
    f = Path(get_testdata_file(name))
    a, b = ingest_index.read_header(f, f.parent, "P"), _reference_header(f)
    for k, v in b.items():
        assert a[k] == v or (a[k] != a[k] and v != v), (k, a[k], v)


def test_header_index_on_demo_and_real_series(demo_root):
    files = ingest_index.find_dicom_files(demo_root / "dicom" / "DEMO001")[:8]
    real = SHARED_DATA / "totalseg" / "dicom"
    if real.is_dir():
        files += ingest_index.find_dicom_files(real)[:4]
    for f in files:
        a, b = ingest_index.read_header(f, f.parent, "P"), _reference_header(f)
        assert {k: a[k] for k in b} == b, f


def test_oblique_volume_file_is_excluded(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((6, 8, 8), np.int16))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "oblique.nii.gz"))
    row = ingest_volumes.image_file_phase(tmp_path / "oblique.nii.gz", "P1", "cmp")
    assert row["status"] == "excluded" and "oblique.nii.gz: oblique orientation" in row["reason"]
    img.SetDirection((0, 0, 1, 0, 1, 0, -1, 0, 0))  # KiTS-like axis order: accepted, reoriented at convert
    sitk.WriteImage(img, str(tmp_path / "kits.nii.gz"))
    assert ingest_volumes.image_file_phase(tmp_path / "kits.nii.gz", "P1", "cmp")["status"] == "ok"
