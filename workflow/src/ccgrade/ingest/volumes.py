"""DICOM ingest, the pixels: a chosen series (or a NIfTI/NRRD volume) read as HU, sorted along the slice
normal, with pydicom's (and its plugins') decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydicom.pixels import get_decoder, pixel_array

from ccgrade.errors import DicomError, GeometryError
from ccgrade.ingest.index import NATIVE
from ccgrade.ingest.series import slice_normal


def image_file_phase(path: str | Path, patient: str, phase: str) -> dict:
    """Phase-table row of a NIfTI/NRRD/MHA volume given as a phase's image (header only, no pixels)."""
    rd = sitk.ImageFileReader()
    rd.SetFileName(str(path))
    name = Path(path).name
    try:
        rd.ReadImageInformation()
    except RuntimeError as e:
        reason = f"cannot read image {name} ({str(e).strip().splitlines()[-1][:200]})"
        return {"patient_id": patient, "phase": phase, "status": "excluded", "series_uid": f"file:{name}",
                "n_slices": 0, "spacing": np.nan, "reason": reason}
    size, d = rd.GetSize(), np.array(rd.GetDirection())
    reason = ""
    if rd.GetDimension() != 3 or size[2] < 2:
        reason = f"image {name} is not a 3D volume (size {list(size)})"
    elif rd.GetNumberOfComponents() != 1:
        reason = f"image {name} has {rd.GetNumberOfComponents()} components per voxel (expected a grey-value CT)"
    elif not np.allclose(np.sort(np.abs(d.reshape(3, 3)), axis=0)[-1], 1, atol=1e-3):
        # any axis-aligned orientation is fine (convert reorients to axial LPS); oblique is not
        reason = f"image {name}: oblique orientation (direction {np.round(d, 3).tolist()})"
    return {"patient_id": patient, "phase": phase, "status": "excluded" if reason else "ok",
            "series_uid": f"file:{name}", "n_slices": int(size[2]) if len(size) > 2 else 0,
            "spacing": float(rd.GetSpacing()[2]) if len(size) > 2 else np.nan, "reason": reason}


def read_image_file(path: str | Path, patient: str, phase: str) -> tuple[sitk.Image, pd.DataFrame]:
    """A per-phase image volume as HU (int16 when integral) and its slice table (no DICOM UIDs)."""
    try:
        img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as e:
        raise DicomError(f"cannot read image ({str(e).strip().splitlines()[-1][:200]})", patient=patient, phase=phase,
                         file=str(path)) from None
    # axial slices in LPS order, whatever the file's axis order (KiTS stores the slice axis first)
    img = sitk.DICOMOrient(img, "LPS")
    arr = sitk.GetArrayFromImage(img)
    if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and arr.min() >= -32768 and arr.max() <= 32767:
        out = sitk.Cast(img, sitk.sitkInt16)
    else:
        out = img
    n = np.array(img.GetDirection()).reshape(3, 3)[:, 2]
    pos = [float(np.dot(img.TransformIndexToPhysicalPoint((0, 0, k)), n)) for k in range(img.GetSize()[2])]
    name = Path(path).name
    table = pd.DataFrame({"k": range(img.GetSize()[2]), "file": [f"{name}#{k}" for k in range(img.GetSize()[2])],
                          "sop_uid": "", "position_mm": pos, "frame_uid": ""})
    return out, table

#: the slice-index columns that describe a slice's pixel data (what ``read_pixels`` needs)
PIXEL_COLUMNS = ["file", "transfer_syntax", "pixel_offset", "pixel_bytes_needed", "rows", "cols", "bits_allocated",
                 "bits_stored", "pixel_representation", "photometric", "samples_per_pixel"]


def read_pixels(path: Path, r) -> np.ndarray:
    """One slice's stored values, decoded by pydicom. Uncompressed single-frame data: the bytes at the
    indexed offset through pydicom's native decoder with the indexed pixel description (masking to
    BitsStored, sign extension and byte order are pydicom's), so the header is not parsed a second time;
    anything else (compressed, several frames) through ``pydicom.pixels.pixel_array`` on the file."""
    ts = str(r.transfer_syntax)
    if ts in NATIVE and np.isfinite(r.pixel_offset) and int(r.samples_per_pixel) == 1:
        n = int(r.pixel_bytes_needed) - int(r.pixel_offset)
        frame = int(r.rows) * int(r.cols) * int(r.bits_allocated) // 8
        if frame and n in (frame, frame + 1):  # one frame (plus the even-length pad byte)
            with open(path, "rb") as fh:
                fh.seek(int(r.pixel_offset))
                buf = fh.read(n)
            if len(buf) != n:
                raise DicomError(f"pixel data ends after {len(buf)} of {n} bytes", file=str(path))
            arr, _ = get_decoder(ts).as_array(
                buf, rows=int(r.rows), columns=int(r.cols), bits_allocated=int(r.bits_allocated),
                bits_stored=int(r.bits_stored), pixel_representation=int(r.pixel_representation),
                photometric_interpretation=str(r.photometric) or "MONOCHROME2", samples_per_pixel=1,
                number_of_frames=1, pixel_keyword="PixelData")
            return arr
    return pixel_array(str(path))


def read_volume(folder: str | Path, slices: pd.DataFrame, patient: str, phase: str) -> tuple[sitk.Image, pd.DataFrame]:
    """Read one series' pixels into a HU SimpleITK image (sorted along the normal, rescale applied)."""
    folder = Path(folder)
    n = slice_normal(slices["iop"].iloc[0])
    cols = list(dict.fromkeys(PIXEL_COLUMNS + ["sop_uid", "frame_uid", "iop", "ipp_x", "ipp_y", "ipp_z", "row_spacing", "col_spacing",
                                               "slice_thickness", "slope", "intercept"]))
    sl = slices[cols].assign(pos=slices[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n).sort_values("pos")
    sl = sl.reset_index(drop=True)
    first = sl.iloc[0]
    shape = (len(sl), int(first["rows"]), int(first["cols"]))
    raw: np.ndarray | None = None
    for k, r in enumerate(sl[PIXEL_COLUMNS].itertuples()):
        try:
            px = read_pixels(folder / r.file, r)
        except Exception as e:  # noqa: BLE001 - any decoder failure is reported with its file
            raise DicomError(f"cannot decode pixel data ({type(e).__name__}: {e}); transfer syntax "
                             f"{r.transfer_syntax}", patient=patient, phase=phase, file=str(folder / r.file)) from e
        if px.shape != shape[1:]:
            raise GeometryError(f"slice shape {px.shape} differs from series shape {shape[1:]}",
                                patient=patient, phase=phase, file=str(folder / r.file))
        if raw is None:
            raw = np.empty(shape, px.dtype if px.dtype.kind in "iu" and px.dtype.itemsize <= 2 else np.float64)
        raw[k] = px
    # HU = slope x stored value + intercept (the modality LUT). MONOCHROME1 is not inverted: it says how to
    # display values after the VOI transform (PS3.3 C.7.6.3.1.2), not what they measure.
    slope, icpt = sl["slope"].to_numpy(float), sl["intercept"].to_numpy(float)
    integral = bool(np.all(slope == np.round(slope)) and np.all(icpt == np.round(icpt)))
    uniform = integral and len(np.unique(slope)) == 1 and len(np.unique(icpt)) == 1
    lo, hi = int(raw.min()), int(raw.max())
    if uniform and slope[0] == 1 and -32768 <= lo + icpt[0] and hi + icpt[0] <= 32767 and -32768 <= lo and hi <= 32767:
        # the usual CT case (slope 1, e.g. intercept -1024): exact, in place, in int16
        arr = raw.astype(np.int16)
        arr += np.int16(icpt[0])
    else:
        if uniform:  # one rescale for the whole series, in exact integer arithmetic
            arr = raw.astype(np.int32) * int(slope[0]) + int(icpt[0])
        else:
            arr = raw.astype(np.float64) * slope[:, None, None] + icpt[:, None, None]
        if integral and arr.min() >= -32768 and arr.max() <= 32767:
            arr = arr.astype(np.int16)
        else:
            arr = arr.astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    iop = np.array([float(x) for x in first["iop"].split()])
    spacing_z = float(np.median(np.diff(sl["pos"]))) if len(sl) > 1 else float(first["slice_thickness"])
    img.SetSpacing((float(first["col_spacing"]), float(first["row_spacing"]), spacing_z))
    img.SetOrigin((float(first["ipp_x"]), float(first["ipp_y"]), float(first["ipp_z"])))
    r_, c_ = iop[:3], iop[3:]
    img.SetDirection(tuple(np.column_stack([r_, c_, n]).ravel()))
    table = pd.DataFrame({"k": range(len(sl)), "file": sl["file"], "sop_uid": sl["sop_uid"], "position_mm": sl["pos"],
                          "frame_uid": sl["frame_uid"]})
    return img, table
