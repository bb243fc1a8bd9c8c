"""A hostile-input corpus, generated here from the demo patient (no committed binaries): each case's
expected outcome (read correctly, an exclusion row, or an error) is asserted with the patient and file
named. The docs/robustness.md counts these cases.

Image cases damage a copy of DEMO001's DICOM folder (S02 plain, S03 corticomedullary, S04 parenchymal,
S05 excretory) and run the two ingest stages the DAG runs (index, then convert); sheet cases write a
cohort sheet. "Read correctly" means the HU volume equals the one from the undamaged series.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from ccgrade.errors import CohortError, DicomError
from ccgrade.ingest import patient as ingest
from conftest import PHASES, repo_config

CFG = repo_config()["ingest"]
FOLDER = {"up": "S02", "cmp": "S03", "np": "S04", "ep": "S05"}


def files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


def index(folder, pid="DEMO001", cfg=CFG):
    return ingest.index_patient(folder, pid, cfg, PHASES)


def status(res):
    return res["phases"].set_index("phase")


def convert(folder, tmp_path, pid="DEMO001"):
    """Index + convert as the DAG does; the phase table and the HU arrays of the usable phases."""
    res = index(folder, pid)
    work = tmp_path / "idx"
    work.mkdir(exist_ok=True)
    for n in ("slices", "phases"):
        res[n].to_csv(work / f"{n}.tsv", sep="\t", index=False)
    table = ingest.convert_patient(folder, pid, work, tmp_path / "vol")
    hu = {ph: sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "vol" / f"{ph}.nii.gz")))
          for ph in table.loc[table["status"] == "ok", "phase"]}
    return table.set_index("phase"), hu


@pytest.fixture(scope="module")
def reference(demo_root, tmp_path_factory):
    """HU volumes of the undamaged DEMO001."""
    return convert(demo_root / "dicom" / "DEMO001", tmp_path_factory.mktemp("ref"))[1]


# ------------------------------------------------------------------------------------- read correctly

@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=["rle", "jpeg2000", "jpegls"])
def test_compressed_series_is_decoded_to_the_same_hu(patient_copy, reference, tmp_path, syntax):
    for f in files(patient_copy / "S04"):
        ds = pydicom.dcmread(f)
        ds.compress(syntax)  # RLE: pydicom; JPEG 2000: pylibjpeg-openjpeg; JPEG-LS: pyjpegls (all in envs/)
        ds.save_as(f)
    assert str(pydicom.dcmread(files(patient_copy / "S04")[0]).file_meta.TransferSyntaxUID) == syntax
    table, hu = convert(patient_copy, tmp_path)
    assert table.loc["np", "status"] == "ok"
    np.testing.assert_array_equal(hu["np"], reference["np"])


def test_jpeg_lossless_series_is_decoded_by_gdcm_to_the_same_hu(patient_copy, reference, tmp_path):
    """JPEG Lossless (process 14, the commonest lossless CT syntax) without a GPL decoder: written by GDCM
    (pydicom cannot encode it) and decoded through pydicom's GDCM plugin (python-gdcm, BSD; envs/)."""
    import gdcm

    for f in files(patient_copy / "S04"):
        r = gdcm.ImageReader()
        r.SetFileName(str(f))
        assert r.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(r.GetImage())
        assert change.Change()
        w = gdcm.ImageWriter()
        w.SetFileName(str(f))
        w.SetFile(r.GetFile())
        w.SetImage(change.GetOutput())
        assert w.Write()
    assert str(pydicom.dcmread(files(patient_copy / "S04")[0]).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
    table, hu = convert(patient_copy, tmp_path)
    assert table.loc["np", "status"] == "ok"
    np.testing.assert_array_equal(hu["np"], reference["np"])


def test_monochrome1_is_not_inverted(patient_copy, reference, tmp_path):
    """MONOCHROME1 says how to display values, not what they measure: HU = slope x value + intercept."""
    for f in files(patient_copy / "S02"):
        ds = pydicom.dcmread(f)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(f)
    _, hu = convert(patient_copy, tmp_path)
    np.testing.assert_array_equal(hu["up"], reference["up"])


def test_non_unit_rescale_slope_and_per_slice_rescale(patient_copy, reference, tmp_path):
    """Stored values rewritten for slope 0.5 (and another intercept on every second slice): same HU."""
    for k, f in enumerate(files(patient_copy / "S03")):
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        icpt = -1024 if k % 2 else -2048
        stored = ((hu - icpt) * 2).astype(np.uint16)
        ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = 0, "0.5", str(icpt)
        ds.BitsStored, ds.HighBit = 16, 15  # the doubled values need all 16 bits
        ds.PixelData = stored.tobytes()
        ds.save_as(f)
    table, hu = convert(patient_copy, tmp_path)
    assert table.loc["cmp", "status"] == "ok"
    np.testing.assert_allclose(hu["cmp"], reference["cmp"], atol=1e-3)


def test_two_series_in_one_folder_and_a_localizer_among_them(patient_copy, reference, tmp_path):
    for f in files(patient_copy / "S03"):
        shutil.move(str(f), patient_copy / "S02" / f"cmp_{f.name}")
    shutil.rmtree(patient_copy / "S03")
    ds = pydicom.dcmread(files(patient_copy / "S02")[0])
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.ImageType, ds.SeriesDescription = ["ORIGINAL", "PRIMARY", "LOCALIZER"], "Scout"
    ds.save_as(patient_copy / "S02" / "zz_scout.dcm")
    res = index(patient_copy)
    assert (status(res)["status"] == "ok").all()
    assert res["series"].set_index("series_description").loc["Scout", "status"] == "ignored"
    _, hu = convert(patient_copy, tmp_path)
    for ph in ("up", "cmp"):
        np.testing.assert_array_equal(hu[ph], reference[ph])


def test_latin1_series_description_is_decoded_by_its_character_set(patient_copy):
    for f in files(patient_copy / "S03"):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SeriesDescription = "Nieren arteriell Phase Größe"
        ds.save_as(f)
    res = index(patient_copy)
    ser = res["series"]
    assert "Nieren arteriell Phase Größe" in set(ser["series_description"])
    assert status(res).loc["cmp", "status"] == "ok"


def test_a_localizer_inside_an_axial_series_is_dropped_and_the_series_kept(patient_copy, reference, tmp_path):
    """A scout stored with the axial slices (same SeriesInstanceUID): the localizer goes, the volume stays."""
    src = files(patient_copy / "S03")[0]
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), 999
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal topogram
    ds.save_as(patient_copy / "S03" / "IM9999")
    res = index(patient_copy)
    assert status(res).loc["cmp", "status"] == "ok" and status(res).loc["cmp", "n_slices"] == len(files(patient_copy / "S03")) - 1
    ser = res["series"].set_index("phase").loc["cmp"]
    assert "dropped 1 localizer image(s) from the series: S03/IM9999" in ser["notes"]
    dropped = res["slices"].set_index("file").loc["S03/IM9999", "dropped"]
    assert dropped == "localizer image"
    _, hu = convert(patient_copy, tmp_path)
    np.testing.assert_array_equal(hu["cmp"], reference["cmp"])


def test_several_reconstructions_of_a_phase_are_chosen_by_the_stated_preference(patient_copy, reference, tmp_path):
    """The same parenchymal phase as 5 mm soft tissue (B30f), 5 mm bone (B70f BONE) and 2.5 mm soft tissue,
    plus a dose report and an exam summary: the 5 mm soft-tissue series is used, the others are recorded
    as alternatives with the reason, and the screen captures are ignored like localizers."""
    for f in files(patient_copy / "S04"):
        ds = pydicom.dcmread(f)
        ds.ConvolutionKernel = "B30f"
        ds.save_as(f)
    for folder, kernel, desc, thick in (("S14", "B70f", "Nephro 5mm BONE", 5.0), ("S24", "B30f", "Nephro 2.5mm", 2.5)):
        (patient_copy / folder).mkdir()
        uid = generate_uid()
        for f in files(patient_copy / "S04"):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
            ds.ConvolutionKernel, ds.SeriesDescription, ds.SliceThickness = kernel, desc, thick
            ds.save_as(patient_copy / folder / f.name)
    for name, desc, image_type in (("dose", "Dose Report", ["DERIVED", "SECONDARY", "OTHER"]),
                                   ("summary", "Exam Summary", ["DERIVED", "SECONDARY", "SCREEN SAVE"])):
        ds = pydicom.dcmread(files(patient_copy / "S04")[0])
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesDescription, ds.ImageType = generate_uid(), generate_uid(), desc, image_type
        (patient_copy / name).mkdir()
        ds.save_as(patient_copy / name / "IM0001")
    res = index(patient_copy)
    st, ser = status(res), res["series"].set_index("series_description")
    assert st.loc["np", "status"] == "ok" and st.loc["np", "series_uid"] == ser.loc[
        pydicom.dcmread(files(patient_copy / "S04")[0]).SeriesDescription, "series_uid"]
    assert (st["status"] == "ok").all()
    assert ser.loc["Nephro 5mm BONE", "choice"] == "alternative" and "avoided: bone" in ser.loc["Nephro 5mm BONE", "choice_reason"]
    assert ser.loc["Nephro 2.5mm", "choice"] == "alternative" and "2.5 mm" in ser.loc["Nephro 2.5mm", "choice_reason"]
    for desc in ("Dose Report", "Exam Summary"):
        assert ser.loc[desc, "status"] == "ignored" and "derived images" in ser.loc[desc, "reason"]
    assert res["exclusions"].empty
    _, hu = convert(patient_copy, tmp_path)
    np.testing.assert_array_equal(hu["np"], reference["np"])
    # two reconstructions the preference cannot tell apart stay ambiguous, naming both and the way out
    for f in files(patient_copy / "S24"):
        ds = pydicom.dcmread(f)
        ds.SliceThickness = 5.0
        ds.save_as(f)
    for f in files(patient_copy / "S14"):
        f.unlink()
    reason = status(index(patient_copy)).loc["np", "reason"]
    assert reason.startswith("ambiguous: 2 series") and "cannot tell them apart" in reason and "ingest.phase_map" in reason


def test_mapping_the_wanted_series_resolves_an_ambiguous_phase(patient_copy):
    (patient_copy / "S33").mkdir()
    uid = generate_uid()
    for f in files(patient_copy / "S03"):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesNumber = uid, generate_uid(), 33
        ds.save_as(patient_copy / "S33" / f.name)
    assert status(index(patient_copy)).loc["cmp", "reason"].startswith("ambiguous")
    mapping = pd.DataFrame({"patient_id": ["DEMO001"], "series_instance_uid": [uid], "phase": ["cmp"]})
    res = ingest.index_patient(patient_copy, "DEMO001", CFG, PHASES, mapping)
    assert status(res).loc["cmp", "status"] == "ok" and status(res).loc["cmp", "series_uid"] == uid


# ------------------------------------------------------------------------------------- exclusion rows

def exclusion(res, phase):
    ex = res["exclusions"]
    return ex[ex["phase"] == phase].iloc[0]


def test_missing_pixel_data_names_the_file(patient_copy):
    f = files(patient_copy / "S03")[4]
    ds = pydicom.dcmread(f)
    del ds.PixelData
    ds.save_as(f)
    res = index(patient_copy)
    rows = res["exclusions"]
    hit = rows[rows["file"].str.contains(f.name)]
    assert len(hit) and "PixelData" in hit["reason"].iloc[0] and (hit["patient_id"] == "DEMO001").all()


def test_gantry_tilt_is_excluded_with_the_reason(patient_copy):
    fs = sorted(files(patient_copy / "S05"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    z0 = float(pydicom.dcmread(fs[0]).ImagePositionPatient[2])
    for f in fs:
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ipp[1] += (ipp[2] - z0) * np.tan(np.radians(15))  # a 15-degree tilt shears positions along y
        ds.ImagePositionPatient, ds.GantryDetectorTilt = ipp, 15
        ds.save_as(f)
    res = index(patient_copy)
    st = status(res)
    assert st.loc["ep", "status"] == "excluded" and "gantry tilt of about 15.0 degrees" in st.loc["ep", "reason"]
    row = exclusion(res, "ep")
    assert row["patient_id"] == "DEMO001" and row["file"].startswith("S05/")
    assert (st.drop("ep")["status"] == "ok").all()


def test_a_codec_without_decoder_is_an_exclusion_naming_it(patient_copy):
    for f in files(patient_copy / "S04"):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom decodes no video
        ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds.save_as(f)
    res = index(patient_copy)
    reason = status(res).loc["np", "reason"]
    assert "MPEG2" in reason and "no decoder" in reason
    assert exclusion(res, "np")["patient_id"] == "DEMO001"


def test_oblique_duplicate_and_missing_phase(patient_copy):
    for f in files(patient_copy / "S02"):
        ds = pydicom.dcmread(f)
        c, s = np.cos(0.2), np.sin(0.2)
        ds.ImageOrientationPatient = [1, 0, 0, 0, c, s]
        ds.save_as(f)
    fs = files(patient_copy / "S03")
    ds = pydicom.dcmread(fs[2])
    ds.ImagePositionPatient = pydicom.dcmread(fs[3]).ImagePositionPatient
    ds.save_as(fs[2])
    shutil.rmtree(patient_copy / "S05")
    st = status(index(patient_copy))
    assert "non-axial orientation" in st.loc["up", "reason"]
    assert "duplicate slice positions" in st.loc["cmp", "reason"]
    assert st.loc["ep", "reason"].startswith("missing phase")
    assert st.loc["np", "status"] == "ok"


def test_truncated_file_is_an_exclusion_or_an_error_naming_it(patient_copy):
    f = files(patient_copy / "S04")[3]
    f.write_bytes(f.read_bytes()[:-700])
    res = index(patient_copy)
    assert f"truncated file S04/{f.name}" in status(res).loc["np", "reason"]
    with pytest.raises(DicomError, match=rf"patient DEMO001.*phase np.*{f.name}"):
        index(patient_copy, cfg={**CFG, "on_bad_series": "error"})


@pytest.mark.parametrize("end", ["first", "last"])
def test_an_unreadable_first_or_last_slice_excludes_the_series(patient_copy, end):
    """No gap betrays a missing end slice: the unreadable file itself must exclude its series."""
    fs = sorted(files(patient_copy / "S04"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    f = fs[0] if end == "first" else fs[-1]
    f.write_bytes(f.read_bytes()[:200])  # cut inside the header
    res = index(patient_copy)
    st = status(res)
    assert st.loc["np", "status"] == "excluded" and f"unreadable file(s) S04/{f.name}" in st.loc["np", "reason"]
    assert exclusion(res, "np")["file"] == f"S04/{f.name}"
    assert (st.drop("np")["status"] == "ok").all()


def test_gantry_tilt_in_the_header_with_unsheared_positions_is_excluded(patient_copy):
    for f in files(patient_copy / "S05"):
        ds = pydicom.dcmread(f)
        ds.GantryDetectorTilt = 12.5
        ds.save_as(f)
    res = index(patient_copy)
    st = status(res)
    assert st.loc["ep", "status"] == "excluded" and "GantryDetectorTilt is 12.5 degrees" in st.loc["ep", "reason"]
    assert exclusion(res, "ep")["file"].startswith("S05/")


def test_a_ge_style_tilt_in_the_orientation_is_named_a_gantry_tilt(patient_copy):
    """GE writes a gantry tilt into ImageOrientationPatient (the column direction turned about the
    left-right axis) rather than shearing the positions: the reason names the tilt, not just "non-axial"."""
    t = np.radians(18)
    for f in files(patient_copy / "S05"):
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(-np.sin(t))]
        ds.GantryDetectorTilt = 18
        ds.save_as(f)
    st = status(index(patient_copy))
    assert st.loc["ep", "status"] == "excluded"
    assert "gantry tilt: the slices are tilted 18.0 degrees about the left-right axis (GantryDetectorTilt 18.0" \
        in st.loc["ep", "reason"]


def test_a_mixed_shape_series_names_the_odd_file(patient_copy):
    f = files(patient_copy / "S02")[5]
    ds = pydicom.dcmread(f)
    arr = ds.pixel_array[:-8]
    ds.Rows, ds.PixelData = arr.shape[0], arr.tobytes()
    ds.save_as(f)
    res = index(patient_copy)
    reason = status(res).loc["up", "reason"]
    assert "mixed series: 2 different rows values" in reason and f"S02/{f.name}" in reason
    assert exclusion(res, "up")["file"] == f"S02/{f.name}"


def test_a_private_element_with_a_huge_length_is_named(patient_copy):
    import struct

    f = files(patient_copy / "S02")[3]
    ds = pydicom.dcmread(f)
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "OB", b"12345678")
    ds.save_as(f)
    data = bytearray(f.read_bytes())
    at = data.find(b"\x09\x00\x01\x10OB")
    data[at + 8:at + 12] = struct.pack("<I", 0x7FFFFFF0)  # a length far past the end of the file
    f.write_bytes(bytes(data))
    res = index(patient_copy)
    ex = res["exclusions"]
    row = ex[ex["file"] == f"S02/{f.name}"].iloc[0]
    assert "private element (0009,1001) declares 2,147,483,632 bytes" in row["reason"]
    assert "PixelData" in row["reason"] and row["patient_id"] == "DEMO001"
    assert status(res).loc["up", "status"] == "excluded"  # and its series is not silently shortened


# ------------------------------------------------------------------------------------- sheet errors

def sheet(tmp_path, body: bytes, name="cohort.tsv"):
    p = tmp_path / name
    p.write_bytes(body)
    return p


def test_sheet_errors_name_patient_and_file(tmp_path):
    from ccgrade.config.cohort import load_cohort_sheet

    cfg = repo_config()
    (tmp_path / "P1").mkdir()
    (tmp_path / "P2").mkdir()
    head = b"patient_id\tgrade\tdicom_dir\tage\n"
    cases = {
        "grade 5": (head + b"P1\t5\tP1\t60\n", r"patient P1.*unknown grade value 5"),
        "grade 0": (head + b"P1\tG0\tP1\t60\n", r"patient P1.*unknown grade value 'G0'"),
        "duplicate": (head + b"P1\t2\tP1\t60\nP1\t3\tP1\t61\n", r"duplicate patient IDs \['P1'\]"),
        "latin-1": (b"patient_id\tgrade\tdicom_dir\tcentre\nP1\t2\tP1\tZ\xfcrich\n", r"not UTF-8 text: line 2"),
        "no images": (head + b"P1\t2\t\t60\n", r"patient P1"),
        "missing folder": (head + b"P1\t2\tnowhere\t60\n", r"patient P1.*nowhere"),
    }
    for name, (body, message) in cases.items():
        with pytest.raises(CohortError, match=message) as e:
            load_cohort_sheet(sheet(tmp_path, body), cfg)
        assert "cohort.tsv" in str(e.value), name
    ok = load_cohort_sheet(sheet(tmp_path, "\ufeffpatient_id\tgrade\tdicom_dir\tcentre\nP1\t2\tP1\tZürich\n"
                                 "P2\tIII\tP2\tBern\n".encode("utf-8")), cfg)  # UTF-8 with BOM: fine
    assert ok["centre"].tolist() == ["Zürich", "Bern"] and ok["grade"].tolist() == [2, 3]


def test_missing_clinical_values_are_excluded_per_variable_and_footnoted():
    from ccgrade.evaluate.baseline import baseline_table

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"grade_group": ["low"] * 20 + ["high"] * 10, "age": rng.normal(60, 9, 30),
                       "sex": rng.choice(["F", "M"], 30)})
    df.loc[[3, 25], "age"] = np.nan
    df.loc[7, "sex"] = None
    opt = repo_config()["baseline"]
    t, notes = baseline_table(df, "grade_group", ("low", "high"), [{"name": "age", "type": "continuous"},
                                                                     {"name": "sex", "type": "categorical"}], opt)
    from scipy import stats

    a, b = df.loc[df.grade_group == "low", "age"].dropna(), df.loc[df.grade_group == "high", "age"].dropna()
    row = t[t["variable_name"] == "age"].iloc[0]
    assert row["test"] in ("student", "mwu")
    want = stats.ttest_ind(a, b).pvalue if row["test"] == "student" else stats.mannwhitneyu(a, b).pvalue
    assert row["p_value"] == pytest.approx(want)
    assert any("Missing values excluded per variable: age 2, sex 1" in n for n in notes)
