"""DICOM ingest, the series checks: one row per series with its geometry (spacing, gaps, tilt, orientation),
its role (a volume, a localizer, a secondary capture, a dose report) and whether its codec can be decoded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.pixels import get_decoder
from ccgrade.ingest.index import NATIVE, object_kind


def slice_normal(iop: str) -> np.ndarray:
    v = np.array([float(x) for x in iop.split()])
    return np.cross(v[:3], v[3:])


def codec_problem(transfer_syntax: str) -> str:
    """Why pixels of this transfer syntax cannot be decoded here ('' when they can): the codec and the
    package that would decode it (pydicom's pixel-data plugins: pylibjpeg-*, pyjpegls, Pillow)."""
    if not transfer_syntax or transfer_syntax in NATIVE:
        return ""
    from pydicom.uid import UID

    uid = UID(transfer_syntax)
    name = uid.name if uid.name != str(uid) else "an unknown transfer syntax"
    try:
        dec = get_decoder(uid)
    except NotImplementedError:
        return f"compressed pixel data in {name} ({uid}): pydicom has no decoder for this transfer syntax"
    if not dec.is_available:  # missing_dependencies: one line per plugin, naming the packages it needs
        return (f"compressed pixel data in {name} ({uid}) and no decoder installed "
                f"({'; '.join(dec.missing_dependencies)})")
    return ""


def _odd_values(sl: pd.DataFrame, col: str) -> tuple[str, str]:
    """For a column that is not constant within a series: a description of its values (the majority first,
    the odd files named) and the first odd file."""
    vals = sl[col].astype(str)
    counts = vals.value_counts()
    major = counts.index[0]
    odd = sl.loc[vals != major, "file"].sort_values()
    named = ", ".join(odd.iloc[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
    return f"{major} in {int(counts.iloc[0])} files, other values in {named}", str(odd.iloc[0])


def _non_axial(n: np.ndarray, sl: pd.DataFrame) -> str:
    """Why a series whose slice normal is not the body axis cannot be used: a gantry tilt when the slices are
    turned about the left-right axis only (GE writes a tilt into the orientation), else an oblique or a
    coronal/sagittal reconstruction."""
    angle = float(np.degrees(np.arccos(min(1.0, abs(n[2])))))
    header = pd.to_numeric(sl["gantry_tilt"], errors="coerce").fillna(0.0).abs().max()
    fix = "resample to an axial grid (e.g. dcm2niix's tilt correction) or export an axial reconstruction"
    about_x = abs(n[0]) < 1e-3
    if about_x and header > 0.01:
        return (f"gantry tilt: the slices are tilted {angle:.1f} degrees about the left-right axis (GantryDetectorTilt "
                f"{header:.1f} degrees); this pipeline needs axial slices: {fix}")
    how = " about the left-right axis: a gantry tilt the header does not state, or an oblique reconstruction" \
        if about_x else ""
    return f"non-axial orientation ({angle:.1f} degrees from axial{how}; slice normal {np.round(n, 3).tolist()}): {fix}"


def series_geometry(sl: pd.DataFrame, tolerance: float = 0.01) -> dict:
    """Check one series' geometry; return spacing/extent facts and ``problem`` (empty when usable)."""
    facts = {"n_slices": len(sl), "problem": "", "problem_file": min(sl["file"])}
    trunc = sl[sl["truncated"]]
    if len(trunc):
        r = trunc.iloc[0]
        facts["problem_file"] = r["file"]
        facts["problem"] = (f"truncated file {r['file']} ({int(r['file_bytes'])} bytes, pixel data needs "
                            f"{int(r['pixel_bytes_needed'])})" + (f" and {len(trunc) - 1} more" if len(trunc) > 1 else ""))
        return facts
    for col, what in (("iop", "orientation"), ("rows", "rows"), ("cols", "columns"), ("row_spacing", "pixel spacing"),
                      ("col_spacing", "pixel spacing"), ("frame_uid", "frame of reference")):
        if sl[col].nunique(dropna=False) > 1:
            desc, facts["problem_file"] = _odd_values(sl, col)
            facts["problem"] = f"mixed series: {sl[col].nunique(dropna=False)} different {what} values ({desc})"
            return facts
    if len(sl) < 2:
        facts["problem"] = "single-slice series (not a volume)"
        return facts
    if sl[["ipp_x", "ipp_y", "ipp_z"]].isna().any().any() or "nan" in sl["iop"].iloc[0]:
        facts["problem"] = "missing ImagePositionPatient/ImageOrientationPatient"
        return facts
    n = slice_normal(sl["iop"].iloc[0])
    if abs(abs(n[2]) - 1) > 1e-3:
        facts["problem"] = _non_axial(n, sl)
        return facts
    codec = codec_problem(str(sl["transfer_syntax"].iloc[0]))
    if codec:
        facts["problem"] = codec
        return facts
    ipp = sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float)
    along = ipp @ n
    order = np.argsort(along, kind="stable")
    pos = along[order]
    files = sl["file"].to_numpy()[order]
    # slices must stack along their normal: in-plane drift of the positions is a tilted gantry (or a
    # sheared reconstruction), which a volume with one direction matrix would silently misplace
    drift = ipp[order] - ipp[order][:1] - np.outer(pos - pos[0], n)
    shift = float(np.abs(drift).max()) if len(drift) else 0.0
    if shift > max(0.05, 0.1 * float(sl["row_spacing"].iloc[0])):
        k = int(np.argmax(np.abs(drift).max(axis=1)))
        facts["problem_file"] = files[k]
        tilt = np.degrees(np.arctan2(np.linalg.norm(drift[-1]), pos[-1] - pos[0])) if pos[-1] > pos[0] else float("nan")
        facts["problem"] = (f"sheared slice positions (gantry tilt of about {tilt:.1f} degrees): slices drift "
                            f"{shift:.2f} mm in-plane; resample to an orthogonal grid (e.g. dcm2niix's tilt "
                            "correction) before use")
        return facts
    tilt = pd.to_numeric(sl["gantry_tilt"], errors="coerce").fillna(0.0).abs()
    if (tilt > 0.01).any():
        facts["problem_file"] = str(sl.loc[tilt.idxmax(), "file"])
        facts["problem"] = (f"GantryDetectorTilt is {float(tilt.max()):.1f} degrees but the slice positions are not "
                            "sheared: the header contradicts itself, so the volume's geometry cannot be trusted; "
                            "resample to an orthogonal grid (e.g. dcm2niix's tilt correction) or correct the header")
        return facts
    d = np.diff(pos)
    if (d < 1e-3).any():
        k = int(np.argmax(d < 1e-3))
        facts["problem_file"] = files[k + 1]
        facts["problem"] = f"duplicate slice positions ({len(d[d < 1e-3])} pairs, first at {pos[k]:.2f} mm)"
        return facts
    med = float(np.median(d))
    facts.update(spacing=med, z_min=float(pos[0]), z_max=float(pos[-1]))
    bad = np.abs(d - med) > tolerance * med + 1e-4
    if bad.any():
        k = int(np.argmax(bad))
        facts["problem_file"] = files[k + 1]
        ratio = d[k] / med
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            facts["problem"] = (f"missing slice(s): gap of {d[k]:.2f} mm between positions {pos[k]:.2f} and "
                                f"{pos[k + 1]:.2f} mm (expected {med:.2f} mm; ~{round(ratio) - 1} slice(s) absent)")
        else:
            facts["problem"] = f"inconsistent slice spacing ({d.min():.2f}-{d.max():.2f} mm, median {med:.2f} mm)"
    return facts

#: SOP classes of screen captures (dose reports, exam summaries): never a CT volume
SECONDARY_CAPTURE = ("1.2.840.10008.5.1.4.1.1.7",)

#: series descriptions of derived, non-volume images
NON_VOLUME = re.compile(r"\b(dose|exam summary|patient protocol|screen ?save|report)\b", re.I)


def image_role(image_type: str, sop_class: str, description: str) -> str:
    """What a slice is: ``image`` (part of a volume), ``localizer`` (scout/topogram), ``derived`` (a dose
    report, exam summary or other screen capture) or ``object`` (a non-image SOP class: DICOMDIR, SR, SEG...)."""
    if object_kind(sop_class):
        return "object"
    it = image_type.upper()
    if "LOCALIZER" in it:
        return "localizer"
    if sop_class.startswith(SECONDARY_CAPTURE) or "SCREEN SAVE" in it or "DOSE" in it.split("\\") \
            or NON_VOLUME.search(description):
        return "derived"
    return "image"


def _unreadable_in(sl: pd.DataFrame, uid: str, unreadable: list[dict]) -> list[dict]:
    """The unreadable files that belong to this series: by their series UID when it could be read, else
    by sharing a folder with the series' files (they might be its first or last slices). A file that does
    not claim to be DICOM (``attach`` False: skipped, or neither preamble nor series UID) belongs to none."""
    folders = {str(Path(f).parent) for f in sl["file"]}
    claims = [u for u in unreadable if u.get("attach", True)]
    return [u for u in claims if u.get("series_uid") == uid or
            (not u.get("series_uid") and str(Path(u["file"]).parent) in folders)]


def summarise_series(slices: pd.DataFrame, tolerance: float, unreadable: list[dict] | None = None) -> pd.DataFrame:
    """One row per series: description, counts, geometry facts, and whether it is a candidate volume.

    Localizer and derived images inside a series are dropped from it (``slices['dropped']`` says why, the
    series' ``notes`` name them) and the rest is checked as a volume; a series that holds nothing else is
    ignored. An unreadable file that belongs to a series makes it bad: its slice would be missing.
    """
    rows = []
    if "dropped" not in slices:
        slices["dropped"] = ""
    for uid, sl in slices.groupby("series_uid", sort=False):
        first = sl.sort_values("ipp_z").iloc[0]
        row = {k: first[k] for k in ("patient_id", "series_uid", "series_number", "series_description",
                                     "modality", "contrast_agent", "acq_s", "bolus_s", "transfer_syntax", "kernel")}
        roles = pd.Series([image_role(str(t), str(c), str(d)) for t, c, d in
                           zip(sl["image_type"], sl["sop_class"], sl["series_description"])], index=sl.index)
        for role in ("localizer", "derived", "object"):
            slices.loc[roles[roles == role].index, "dropped"] = "non-image object" if role == "object" else f"{role} image"
        used = sl[roles == "image"]
        row["n_files"] = len(used)
        row["slice_thickness"] = float(pd.to_numeric(used["slice_thickness"], errors="coerce").median()) if len(used) else np.nan
        notes = []
        if len(used) < len(sl) and len(used):
            gone = sl.loc[roles != "image"].sort_values("file")
            notes.append(f"dropped {len(gone)} {'/'.join(sorted(set(roles[roles != 'image'])))} image(s) from the "
                         f"series: {', '.join(gone['file'].iloc[:3])}" + (" ..." if len(gone) > 3 else ""))
        status, reason = "candidate", ""
        if (roles == "object").all():
            kinds = sorted({object_kind(str(c)) for c in sl["sop_class"]})
            status, reason = "ignored", f"non-image object(s): {'; '.join(kinds)}"
        elif first["modality"] != "CT":
            status, reason = "ignored", f"modality {first['modality']!r} is not CT"
        elif not len(used):
            status, reason = "ignored", ("localizer/scout images" if (roles == "localizer").any()
                                         else "derived images (dose report, screen capture or summary), not a volume")
        bad_files = _unreadable_in(sl, str(uid), unreadable or []) if status == "candidate" else []
        geo = series_geometry(used, tolerance) if status == "candidate" else {"problem": ""}
        if bad_files:
            named = ", ".join(u["file"] for u in bad_files[:3]) + (" ..." if len(bad_files) > 3 else "")
            what = "image(s) without PixelData" if all(u["reason"].startswith("image without PixelData")
                                                       for u in bad_files) else "unreadable file(s)"
            status, reason = "bad", (f"{what} {named} in this series or its folder: a slice would be "
                                     "missing from the volume; repair or remove the file(s)")
            geo["problem_file"] = bad_files[0]["file"]
        elif geo.get("problem"):
            status, reason = "bad", geo["problem"]
        row.update(status=status, reason=reason, first_file=min(sl["file"]), notes="; ".join(notes),
                   problem_file=geo.get("problem_file", ""), spacing=geo.get("spacing", np.nan),
                   z_min=geo.get("z_min", np.nan), z_max=geo.get("z_max", np.nan))
        rows.append(row)
    return pd.DataFrame(rows)
