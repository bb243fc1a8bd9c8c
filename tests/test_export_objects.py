"""What a hospital export puts beside the images (issue 27): a DICOMDIR in every folder of a media set,
structured reports, presentation states, key objects, raw data, SEG and RTSTRUCT objects, encapsulated PDFs,
non-DICOM files, empty files, links to nothing and FIFOs. Every one is listed as what it is; none counts as a
missing slice, none is opened when it is a special file, and the phases are still found. Files are built here
with pydicom from the demo patient (no committed binaries)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ccgrade.ingest import patient as ingest
from ccgrade.ingest.index import NON_IMAGE_CLASSES, object_kind
from conftest import PHASES, repo_config

CFG = repo_config()["ingest"]
FOLDER = {"up": "S02", "cmp": "S03", "np": "S04", "ep": "S05"}

#: one SOP class of each non-image kind the index must list (PS3.4 Annex B), with its modality
OBJECTS = {
    "dicomdir": ("1.2.840.10008.1.3.10", ""),
    "dose_sr": ("1.2.840.10008.5.1.4.1.1.88.67", "SR"),  # X-Ray Radiation Dose SR
    "comprehensive_sr": ("1.2.840.10008.5.1.4.1.1.88.33", "SR"),
    "presentation_state": ("1.2.840.10008.5.1.4.1.1.11.1", "PR"),
    "key_object": ("1.2.840.10008.5.1.4.1.1.88.59", "KO"),
    "raw_data": ("1.2.840.10008.5.1.4.1.1.66", "CT"),  # Siemens raw data objects say CT
    "seg": ("1.2.840.10008.5.1.4.1.1.66.4", "SEG"),
    "rtstruct": ("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT"),
    "pdf": ("1.2.840.10008.5.1.4.1.1.104.1", "DOC"),
}


def non_image(path, sop_class: str, modality: str, series_uid: str | None = None) -> None:
    """A non-image object as PACS exports write them: preamble, file meta, no PixelData."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if sop_class == "1.2.840.10008.1.3.10":  # a DICOMDIR: a directory record sequence, no SOP Class element
        ds.FileSetID = "PHILIPS"
        rec = Dataset()
        rec.DirectoryRecordType, rec.ReferencedFileID = "IMAGE", ["DICOM", "IM_0001"]
        ds.DirectoryRecordSequence = Sequence([rec])
    else:
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, meta.MediaStorageSOPInstanceUID, modality
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid or generate_uid(), generate_uid()
        ds.SeriesDescription = "Dose Report" if "88" in sop_class else "export object"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def index(folder, pid="DEMO001"):
    return ingest.index_patient(folder, pid, CFG, PHASES)


def test_every_listed_non_image_class_has_a_kind_and_images_have_none():
    assert all(object_kind(uid) for uid, _ in NON_IMAGE_CLASSES)
    assert all(object_kind(c) for c, _ in OBJECTS.values())
    for image in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.7", "",
                  "1.2.840.10008.5.1.4.1.1.660"):  # CT, enhanced CT, secondary capture, none, not a sub-class
        assert object_kind(image) == ""


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_a_non_image_object_in_a_series_folder_is_listed_and_loses_no_phase(patient_copy, name):
    """Inside the corticomedullary series' own folder, with that series' UID where the object has one: the
    object is listed (an ignored series or a dropped file naming its kind) and every phase stays usable."""
    sop_class, modality = OBJECTS[name]
    cmp_uid = str(pydicom.dcmread(next((patient_copy / "S03").iterdir())).SeriesInstanceUID)
    non_image(patient_copy / "S03" / "XX_OBJECT", sop_class, modality, series_uid=None if name == "pdf" else cmp_uid)
    own_series = name in ("pdf", "dicomdir")  # (a DICOMDIR has no series UID: a series of its own)
    res = index(patient_copy)
    st = res["phases"].set_index("phase")
    assert (st["status"] == "ok").all(), st["reason"].to_dict()
    assert (st.loc["cmp", "n_slices"] == 14)
    assert res["exclusions"].empty, res["exclusions"].to_dict("records")
    row = res["slices"][res["slices"]["file"] == "S03/XX_OBJECT"]
    assert len(row) == 1 and row["dropped"].iloc[0] == "non-image object"
    if own_series:  # a series of its own: listed as ignored, naming the kind
        ser = res["series"].set_index("series_uid").loc[row["series_uid"].iloc[0]]
        assert ser["status"] == "ignored" and object_kind(sop_class) in ser["reason"]
    else:  # inside the image series: the series' notes name it
        notes = res["series"].set_index("series_uid").loc[cmp_uid, "notes"]
        assert "dropped 1 object image(s)" in notes and "S03/XX_OBJECT" in notes


def philips_media_set(src, dst):
    """The demo patient as a Philips CD export: DICOM/<study>/<series>/IM_nnnn (no extension), a DIRFILE (a
    DICOMDIR under another name) at the top and in every folder, and the parenchymal phase reconstructed
    three ways (5 mm soft tissue, 1 mm soft tissue, 5 mm bone) beside a dose report."""
    for ph, folder in FOLDER.items():
        for k, f in enumerate(sorted((src / folder).iterdir()), 1):
            ds = pydicom.dcmread(f)
            ds.ConvolutionKernel = "B"
            ds.save_as(dst / "DICOM" / "ST00001" / folder / f"IM_{k:04d}", enforce_file_format=True) if (
                dst / "DICOM" / "ST00001" / folder).mkdir(parents=True, exist_ok=True) is None else None
    for tag, kernel, thick in (("SE_1MM", "B", 1.0), ("SE_BONE", "YB BONE", 5.0)):
        uid = generate_uid()
        (dst / "DICOM" / "ST00001" / tag).mkdir()
        for k, f in enumerate(sorted((src / FOLDER["np"]).iterdir()), 1):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
            ds.ConvolutionKernel, ds.SliceThickness = kernel, thick
            ds.SeriesDescription = f"{ds.SeriesDescription} {tag}"
            ds.save_as(dst / "DICOM" / "ST00001" / tag / f"IM_{k:04d}", enforce_file_format=True)
    non_image(dst / "DICOM" / "ST00001" / "SR" / "IM_0001", OBJECTS["dose_sr"][0], "SR")
    for folder in [dst, *(p for p in dst.rglob("*") if p.is_dir())]:
        non_image(folder / "DIRFILE", OBJECTS["dicomdir"][0], "")


def test_a_philips_media_set_gets_its_phases_and_lists_its_dirfiles(demo_root, tmp_path):
    philips_media_set(demo_root / "dicom" / "DEMO001", tmp_path)
    res = index(tmp_path)
    st, ser = res["phases"].set_index("phase"), res["series"]
    assert (st["status"] == "ok").all(), st["reason"].to_dict()
    assert res["exclusions"].empty, res["exclusions"].to_dict("records")
    dirfiles = res["slices"][res["slices"]["file"].str.endswith("DIRFILE")]
    n_folders = 1 + sum(1 for p in tmp_path.rglob("*") if p.is_dir())
    assert len(dirfiles) == n_folders and (dirfiles["dropped"] == "non-image object").all()
    objects = ser[ser["reason"].str.startswith("non-image object(s)", na=False)]
    assert (objects["status"] == "ignored").all()
    assert objects["reason"].str.contains("DICOMDIR").sum() == n_folders
    assert objects["reason"].str.contains("structured report").sum() == 1
    # the parenchymal phase: 5 mm soft tissue chosen over the 1 mm and the bone reconstructions
    chosen = ser.set_index("series_uid").loc[st.loc["np", "series_uid"]]
    assert chosen["kernel"] == "B" and float(chosen["slice_thickness"]) == 5.0
    alts = ser[ser["choice"] == "alternative"].set_index("series_description")
    assert len(alts) == 2 and any("bone" in r for r in alts["choice_reason"]) and any(r.startswith("1.0 mm") for r in alts["choice_reason"])


def test_special_empty_dangling_and_foreign_files_are_listed_and_never_open(patient_copy):
    """A FIFO named like a slice would block a reader for ever: it is listed, never opened. An empty file, a
    link to nothing, a README and a non-DICOM file named .dcm (also as a link) affect no series."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("this platform has no FIFOs (os.mkfifo)")
    os.mkfifo(patient_copy / "S03" / "IM9999.dcm")
    (patient_copy / "S03" / "empty.dcm").write_bytes(b"")
    os.symlink(patient_copy / "nowhere.dcm", patient_copy / "S04" / "gone.dcm")
    (patient_copy / "S04" / "README.txt").write_text("exported by PACS\n")
    (patient_copy / "S05" / "notes.dcm").write_text("not a DICOM file, whatever its name says\n" * 20)
    (patient_copy / "outside.txt").write_text("a text file\n")
    os.symlink(patient_copy / "outside.txt", patient_copy / "S02" / "linked.dcm")
    res = index(patient_copy)  # returns: nothing opened the FIFO
    st = res["phases"].set_index("phase")
    assert (st["status"] == "ok").all(), st["reason"].to_dict()
    ex = res["exclusions"].set_index("file")
    assert ex.loc["S03/IM9999.dcm", "stage"] == "skipped" and "FIFO" in ex.loc["S03/IM9999.dcm", "reason"]
    assert "empty file" in ex.loc["S03/empty.dcm", "reason"] and "does not exist" in ex.loc["S04/gone.dcm", "reason"]
    assert ex.loc["S05/notes.dcm", "reason"].startswith("not a DICOM file")
    assert ex.loc["S02/linked.dcm", "reason"].startswith("not a DICOM file")
    assert "S04/README.txt" not in ex.index
    # with on_bad_series: error, a skipped or foreign file still stops nothing
    r2 = ingest.index_patient(patient_copy, "DEMO001", {**CFG, "on_bad_series": "error"}, PHASES)
    assert (r2["phases"]["status"] == "ok").all()


def test_an_image_without_pixel_data_is_named_as_such_not_as_an_unreadable_header(patient_copy):
    f = sorted((patient_copy / "S03").iterdir())[4]
    ds = pydicom.dcmread(f)
    del ds.PixelData
    ds.save_as(f)
    res = index(patient_copy)
    reasons = res["exclusions"].set_index("file").loc[[f"S03/{f.name}"], "reason"]
    assert len(reasons) and all("unreadable" not in r for r in reasons), reasons.tolist()
    reason = reasons.iloc[0]
    assert reason.startswith("image without PixelData") 
    assert res["phases"].set_index("phase").loc["cmp", "status"] == "excluded"


def test_a_series_folder_linked_from_outside_is_read_and_said_and_a_link_loop_ends(patient_copy, tmp_path):
    """A series folder that is a link (a common way to assemble a cohort) was skipped silently (os.walk does
    not follow links): it is read, and a link leading outside the patient's folder is a note naming it. A link
    back to a folder already read (a loop) is read once."""
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(patient_copy / "S05"), elsewhere)
    os.symlink(elsewhere, patient_copy / "S05")
    os.symlink(patient_copy, patient_copy / "S04" / "loop")
    res = index(patient_copy)
    st = res["phases"].set_index("phase")
    assert (st["status"] == "ok").all() and st.loc["ep", "n_slices"] == 14, st["reason"].to_dict()
    notes = res["exclusions"][res["exclusions"]["stage"] == "note"]
    assert list(notes["file"]) == ["S05"] and "linked from outside the patient's folder" in notes["reason"].iloc[0]
    assert len(res["slices"]) == 4 * 14  # the loop added nothing
