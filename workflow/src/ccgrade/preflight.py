"""The pre-flight check and the study plan: everything that can be known before a job runs, checked at once.

``plan`` is what the Snakefile calls at parse time. It reads the config (keys a user config ``replace``\\s
taken whole), the cohort (demo, KiTS or sheet), and, for a sheet, surveys every patient with cheap header
reads: the DICOM header index (which phases each patient's series give, as ingest assigns them), image and
mask geometry headers, RTSTRUCT ROI names and references (and whether their contours can be linked by SOP
UID or by plane position), labelme and polygon files. From these facts it derives the concrete config
(``studyconfig.derive_config``) and checks it. Every problem is reported in one list, each naming the key,
patient, phase and file and saying what to do; errors stop the run before any job, warnings and skipped
parts are shown and the run goes on.

The survey of a patient is cached (``.snakemake/ccgrade/survey.json`` beside Snakemake's own state, never in
``results/``: it holds file names) under a key made of the patient's sheet row, the modification times of
the folders and files it names, the config keys it depends on and the code that computes it, so a no-op
rerun reads headers of nobody.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import PHASE_NAMES, paths
from .errors import CcgradeError, CohortError, ConfigError, Problem, problem

ALL_PHASES = list(PHASE_NAMES)
CACHE = Path(".snakemake") / "ccgrade" / "survey.json"
#: the modules whose logic decides a survey (a change invalidates the cache): these and what they import
SURVEY_MODULES = ("preflight", "ingest", "rtstruct", "cohort", "annotations")


@dataclass
class Plan:
    """What the Snakefile builds its DAG from."""

    config: dict
    cohort: pd.DataFrame
    sheet: str
    problems: list[Problem] = field(default_factory=list)
    survey: dict[str, dict] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    #: the new patients ``predict`` grades (none unless predict.sheet is set or the cohort is the demo's) and
    #: the cells whose bundles grade them
    predict: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "grade", "grade_group"]))
    predict_cells: list[dict] = field(default_factory=list)
    #: the external cohort (``external``: another centre's sheet, or the demo's shifted centre) on which every
    #: trained cell is evaluated unchanged, and those cells
    external: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "grade", "grade_group"]))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


# ------------------------------------------------------------------------------------------ header survey

def _corners(size, spacing, origin, direction) -> list[list[float]]:
    """Physical positions of the 8 corner voxel centres of a grid (sorted: independent of axis order)."""
    d = np.asarray(direction, float).reshape(3, 3)
    pts = []
    for i in (0, size[0] - 1):
        for j in (0, size[1] - 1):
            for k in (0, size[2] - 1):
                pts.append((np.asarray(origin, float) + d @ (np.array([i, j, k]) * np.asarray(spacing, float))).tolist())
    return sorted([round(v, 2) for v in p] for p in pts)


def grid_of_header(path: str) -> dict:
    """Size, spacing and corner positions of a NIfTI/NRRD/MHA file from its header (no voxels read)."""
    import SimpleITK as sitk

    rd = sitk.ImageFileReader()
    rd.SetFileName(str(path))
    rd.ReadImageInformation()
    size, sp = list(rd.GetSize()), list(rd.GetSpacing())
    if len(size) != 3:
        return {"dims": len(size), "size": size}
    return {"dims": 3, "size": size, "spacing": sp, "corners": _corners(size, sp, rd.GetOrigin(), rd.GetDirection()),
            "positions": None, "origin": list(rd.GetOrigin()), "direction": list(rd.GetDirection())}


def grid_of_series(sl: pd.DataFrame) -> dict:
    """The grid a DICOM series becomes at conversion (sorted along its normal), and its slice positions."""
    iop = np.array([float(x) for x in str(sl["iop"].iloc[0]).split()])
    n = np.cross(iop[:3], iop[3:])
    pos = np.sort(sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n)
    first = sl.assign(_p=sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n).sort_values("_p").iloc[0]
    dz = float(np.median(np.diff(pos))) if len(pos) > 1 else float(first["slice_thickness"])
    size = [int(first["cols"]), int(first["rows"]), len(sl)]
    sp = [float(first["col_spacing"]), float(first["row_spacing"]), dz]
    direction = np.column_stack([iop[:3], iop[3:], n]).ravel().tolist()
    origin = [float(first["ipp_x"]), float(first["ipp_y"]), float(first["ipp_z"])]
    return {"dims": 3, "size": size, "spacing": sp, "corners": _corners(size, sp, origin, direction),
            "positions": pos.round(3).tolist(), "origin": origin, "direction": direction}


def same_grid(a: dict, b: dict, tol: float = 0.05) -> str:
    """'' when two grids are the same voxels (in any axis order or direction), else what differs."""
    if a.get("dims") != 3 or b.get("dims") != 3:
        return f"a {b.get('dims')}D image against a 3D image"
    pa = sorted(zip(a["size"], np.round(a["spacing"], 3)))
    pb = sorted(zip(b["size"], np.round(b["spacing"], 3)))
    if pa != pb:
        return f"size {b['size']} at {np.round(b['spacing'], 3).tolist()} mm vs image {a['size']} at " \
               f"{np.round(a['spacing'], 3).tolist()} mm"
    if not np.allclose(np.array(a["corners"]), np.array(b["corners"]), atol=max(tol, 0.1 * min(a["spacing"]))):
        return "the same size but another position in space (origin or direction differ)"
    return ""


def rtstruct_roi_names(path: str) -> list[str]:
    """The ROI names of a structure set ([] when it cannot be read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, specific_tags=[0x30060020])
        return [str(getattr(r, "ROIName", "")) for r in getattr(ds, "StructureSetROISequence", [])]
    except Exception:  # noqa: BLE001 - a best effort for the starter config
        return []


def _rtstruct_check(path: str, img: dict, pid: str, phase: str, roi_pattern: str, link: str) -> tuple[list[Problem], str]:
    """What the crop stage would say of an RTSTRUCT on this image, from the file alone: ROI names, the series
    and frame of reference it references, and whether every contour lies on a slice plane of the image.
    Returns the problems and the expected link (uid, position, or 'uid, position')."""
    import pydicom

    out: list[Problem] = []

    def err(msg: str, fix: str) -> None:
        out.append(problem("error", msg, fix, patient=pid, phase=phase, file=path))

    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's problem
        err(f"not a readable DICOM file ({type(e).__name__}: {e})", f"give the RTSTRUCT file as rtstruct_{phase}")
        return out, ""
    if str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        err(f"not an RTSTRUCT (Modality {getattr(ds, 'Modality', '')!r})", f"give the RTSTRUCT file as rtstruct_{phase}")
        return out, ""
    names = {int(r.ROINumber): str(getattr(r, "ROIName", "")) for r in getattr(ds, "StructureSetROISequence", [])}
    rx = re.compile(roi_pattern, re.I)
    chosen = {n for n, name in names.items() if rx.search(name)}
    if not chosen:
        err(f"no ROI name matches rtstruct_roi {roi_pattern!r} (ROIs: {sorted(names.values())})",
            "set config key rtstruct_roi to a pattern matching the tumour ROI's name, e.g. "
            f"rtstruct_roi: \"{re.escape(sorted(names.values())[0]) if names else 'tumour'}\"")
        return out, ""
    if not img or img.get("status") != "ok":
        return out, ""  # the image's own problem is reported by ingest
    ref_series = {str(s.SeriesInstanceUID) for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", [])
                  for st in getattr(fr, "RTReferencedStudySequence", [])
                  for s in getattr(st, "RTReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
    frames = {str(fr.FrameOfReferenceUID) for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", [])
              if "FrameOfReferenceUID" in fr} | {str(r.ReferencedFrameOfReferenceUID)
                                                 for r in getattr(ds, "StructureSetROISequence", [])
                                                 if int(r.ROINumber) in chosen and "ReferencedFrameOfReferenceUID" in r}
    sops = set(img.get("sop_uids") or [])
    series_uid, frame_uid = img.get("series_uid", ""), img.get("frame_uid", "")
    if series_uid and ref_series and series_uid not in ref_series and link != "position":
        same_frame = bool(frame_uid) and frame_uid in frames  # a re-export keeps its frame of reference
        err(f"RTSTRUCT references series {sorted(ref_series)}, not the {phase} image series"
            + (": it was drawn on another series of the same frame of reference" if same_frame else
               f" (nor its frame of reference): it was drawn on other images, perhaps another patient's"),
            f"give the structure set drawn on the {phase} series" +
            (" (or, if it was and the series was re-exported, set rtstruct_link: position)" if same_frame else ""))
        return out, ""
    grid = img["grid"]
    d = np.asarray(grid["direction"], float).reshape(3, 3)
    normal, origin = d[:, 2], np.asarray(grid["origin"], float)
    pos = np.asarray(grid["positions"] if grid.get("positions") else
                     [float(origin @ normal + k * grid["spacing"][2]) for k in range(grid["size"][2])])
    dz = grid["spacing"][2]
    how, off_plane, outside = set(), [], []
    for rc in getattr(ds, "ROIContourSequence", []):
        if int(rc.ReferencedROINumber) not in chosen:
            continue
        for c in getattr(rc, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            refs = [str(r.ReferencedSOPInstanceUID) for r in getattr(c, "ContourImageSequence", [])]
            z = float(np.asarray(c.ContourData[:3], float) @ normal)
            if link != "position" and refs and set(refs) & sops:
                how.add("uid")
            elif link == "uid":
                err(f"contour references image {refs[0] if refs else '(none)'}, which is not a slice of the {phase} "
                    "series (rtstruct_link: uid)", "set rtstruct_link: auto to link contours by plane position")
                return out, ""
            else:
                if link == "auto" and sops and not ((series_uid and series_uid in ref_series) or frame_uid in frames):
                    err(f"contour references image {refs[0] if refs else '(none)'}, which is not a slice of the "
                        f"{phase} series, and neither the series nor the frame of reference matches: it was drawn on "
                        "another image", f"give the structure set drawn on the {phase} series")
                    return out, ""
                how.add("position")
            k = int(np.argmin(np.abs(pos - z)))
            if abs(pos[k] - z) > 0.25 * dz:
                (outside if z < pos.min() - 0.25 * dz or z > pos.max() + 0.25 * dz else off_plane).append(z)
    if outside:
        err(f"{len(outside)} contour(s) lie outside the {phase} image (at {sorted(outside)[0]:.1f} mm; the image "
            f"spans {pos.min():.1f} to {pos.max():.1f} mm): the image lacks slices they were drawn on",
            "export the whole series the structure set was drawn on")
    if off_plane:
        err(f"{len(off_plane)} contour(s) lie between slice planes of the {phase} image (e.g. at {off_plane[0]:.1f} "
            "mm)", "the structure set must be drawn on this series' slices (not on a reformat or another reconstruction)")
    return out, ", ".join(sorted(how))


def survey_patient(rec: dict, cfg: dict) -> dict:
    """One patient's facts and problems from headers alone: the phases its images give (DICOM as the header
    index assigns them), the annotation formats per phase, and what would go wrong in a job."""
    from . import ingest
    from .cohort import patient_sources

    pid = rec["patient_id"]
    probs: list[Problem] = []
    images: dict[str, dict] = {}
    # files that do not exist are the sheet check's errors already: the survey reads what is there
    src = {ph: {k: v for k, v in s.items() if Path(v).exists()} for ph, s in patient_sources(rec, ALL_PHASES).items()}
    files = {ph: s["image"] for ph, s in src.items() if "image" in s}
    dicom = rec.get("dicom_dir") if isinstance(rec.get("dicom_dir"), str) and Path(rec["dicom_dir"]).is_dir() else None
    mapping = None
    if cfg["ingest"].get("phase_map"):
        mapping = pd.read_csv(cfg["ingest"]["phase_map"], sep="\t", dtype=str, keep_default_na=False)
    if dicom or files:
        try:
            res = ingest.index_patient(dicom, pid, {**cfg["ingest"], "on_bad_series": "exclude"}, ALL_PHASES, mapping,
                                       files)
        except CcgradeError as e:
            probs.append(Problem("error", str(e), "check the patient's dicom_dir"))
            res = None
        if res is not None:
            sl = res["slices"]
            for r in res["phases"].itertuples():
                info = {"status": r.status, "reason": r.reason, "series_uid": "", "frame_uid": ""}
                if r.status == "ok" and str(r.series_uid).startswith("file:"):
                    info["grid"] = grid_of_header(files[r.phase])
                elif r.status == "ok":
                    s = sl[(sl["series_uid"] == r.series_uid) & (sl["dropped"] == "")]
                    info.update(series_uid=str(r.series_uid), frame_uid=str(s["frame_uid"].iloc[0]),
                                sop_uids=sorted(s["sop_uid"].astype(str)), grid=grid_of_series(s),
                                file_names=sorted({n for f in s["file"].astype(str) for n in (Path(f).name, Path(f).stem)}))
                images[r.phase] = info
            probs += _ingest_notes(res["exclusions"], pid, src)
            if dicom and cfg.get("privacy", {}).get("mode", "pseudonymise") == "pseudonymise":
                probs += _identity_check(Path(dicom), sl, pid)
    annotations = {ph: sorted(k for k in s if k != "image") for ph, s in src.items()}
    links: dict[str, str] = {}
    roi_names: dict[str, list[str]] = {}
    for ph, s in src.items():
        img = images.get(ph)
        if "mask" in s:
            try:
                g = grid_of_header(s["mask"])
            except RuntimeError as e:
                probs.append(problem("error", f"cannot read the mask header ({str(e).strip().splitlines()[-1][:160]})",
                                     "give a NIfTI/NRRD/MHA label image", patient=pid, phase=ph, file=s["mask"]))
                continue
            if img and img["status"] == "ok":
                diff = same_grid(img["grid"], g)
                if diff:
                    probs.append(problem("error", f"the mask is not on the {ph} image's grid: {diff}",
                                         f"give the mask drawn on this patient's {ph} series (same size, spacing and "
                                         "position)", patient=pid, phase=ph, file=s["mask"]))
        if "rtstruct" in s:
            p, how = _rtstruct_check(s["rtstruct"], img or {}, pid, ph, cfg.get("rtstruct_roi") or "tumou?r",
                                     cfg.get("rtstruct_link", "auto"))
            probs += p
            links[ph] = how
            roi_names[ph] = rtstruct_roi_names(s["rtstruct"])
        dicom_img = img if img and img.get("status") == "ok" and img.get("sop_uids") else None
        if "labelme" in s and Path(s["labelme"]).is_dir():
            probs += _labelme_check(Path(s["labelme"]), dicom_img, pid, ph)
        if "polygons" in s:
            probs += _polygons_check(s["polygons"], dicom_img, pid, ph)
    return {"images": {ph: {k: v for k, v in i.items() if k not in ("sop_uids", "file_names")}
                       for ph, i in images.items()},
            "annotations": annotations, "links": links, "roi_names": roi_names, "problems": [p.__dict__ for p in probs]}


#: header identifiers a sheet's patient ID must not be (PS3.15 Table E.1-1), with what each is
IDENTIFIERS = {0x00100020: "PatientID (often the MRN)", 0x00101000: "OtherPatientIDs", 0x00080050: "AccessionNumber"}


def _identity_check(folder: Path, slices: pd.DataFrame, pid: str) -> list[Problem]:
    """The sheet's ID against the identifiers in the patient's headers (the first file of each series): an
    ID that is the patient's MRN or accession number names every file under results/ and is exempt from the
    privacy scan, so it is an error, unless the files say they were de-identified (PatientIdentityRemoved
    YES: their PatientID is then a pseudonym already, as in TCIA collections)."""
    import pydicom

    firsts = slices.sort_values("file").drop_duplicates("series_uid")["file"].astype(str) if len(slices) else []
    for f in firsts:
        try:
            ds = pydicom.dcmread(folder / f, stop_before_pixels=True, specific_tags=[*IDENTIFIERS, 0x00120062])
        except Exception:  # noqa: BLE001 - the index read it; a second failure has nothing to add
            continue
        if str(ds.get("PatientIdentityRemoved", "")).strip().upper() == "YES":
            continue
        for tag, what in IDENTIFIERS.items():
            el = ds.get(tag)
            vals = [] if el is None or el.value is None else el.value if isinstance(el.value, (list, tuple,
                    pydicom.multival.MultiValue)) else [el.value]
            if any(str(v).strip().casefold() == pid.casefold() for v in vals):
                return [problem("error", f"the patient ID is the {what} in the patient's DICOM headers, which are not "
                                         "marked de-identified: it would name every file under results/",
                                "give the patient a study pseudonym (keep the mapping outside the study), or, if the "
                                "headers' ID is already a pseudonym, say so by setting PatientIdentityRemoved YES",
                                patient=pid, file=str(folder))]
    return []


def survey_safely(rec: dict, cfg: dict) -> dict:
    """``survey_patient``, with anything unforeseen in a patient's files reported as that patient's error
    (the pre-flight never stops on one patient's traceback)."""
    try:
        return survey_patient(rec, cfg)
    except Exception as e:  # noqa: BLE001 - reported with the patient, the run stops on it before any job
        msg = problem("error", f"the header survey failed ({type(e).__name__}: {e})", "check this patient's files; "
                      "if they are fine, please report the message", patient=rec.get("patient_id"))
        return {"images": {}, "annotations": {}, "links": {}, "roi_names": {}, "problems": [msg.__dict__]}


def _labelme_check(folder: Path, img: dict | None, pid: str, phase: str) -> list[Problem]:
    """A labelme folder: JSON files at all, each readable, each naming a slice of the series (its file name or
    SOP Instance UID)."""
    files = sorted(folder.glob("*.json"))
    if not files:
        return [problem("warning", "the labelme folder holds no JSON file", f"add the rectangles, or remove the column "
                        f"labelme_{phase}", patient=pid, phase=phase, file=str(folder))]
    known = set(img["sop_uids"]) | set(img["file_names"]) if img else None
    bad, unreadable = [], []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            ref = str(doc.get("imagePath") or f.stem).replace("\\", "/")
        except (OSError, ValueError, AttributeError):
            unreadable.append(f.name)
            continue
        if known is not None and not ({Path(ref).name, Path(ref).stem} & known):
            bad.append(f"{f.name} -> {ref}")
    out = []
    if unreadable:
        out.append(problem("error", f"{len(unreadable)} file(s) are not labelme JSON ({', '.join(unreadable[:3])})",
                           "save the rectangles from labelme again", patient=pid, phase=phase, file=str(folder)))
    if bad:
        out.append(problem("error", f"{len(bad)} labelme file(s) name an image that is not a slice of the {phase} series "
                                    f"({'; '.join(bad[:2])})", "imagePath must be the DICOM file's name or its "
                           "SOPInstanceUID", patient=pid, phase=phase, file=str(folder)))
    return out


def _polygons_check(path: str, img: dict | None, pid: str, phase: str) -> list[Problem]:
    """A polygon JSON: readable, and every annotation on a SOP Instance UID of the series."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        anns = [a for ds in doc.get("datasets", [doc]) for a in ds.get("annotations", [])]
    except (OSError, ValueError, AttributeError) as e:
        return [problem("error", f"not a polygon JSON ({e})", "export the polygons as JSON (MD.ai style)",
                        patient=pid, phase=phase, file=path)]
    if img is None:
        return []
    bad = sorted({str(a.get("SOPInstanceUID", "")) for a in anns} - set(img["sop_uids"]))
    if bad:
        return [problem("error", f"{len(bad)} polygon(s) on SOPInstanceUID(s) that are not slices of the {phase} series "
                                 f"(e.g. {bad[0]!r})", f"export the polygons drawn on the {phase} series",
                        patient=pid, phase=phase, file=path)]
    return []


def _ingest_notes(excl: pd.DataFrame, pid: str, src: dict) -> list[Problem]:
    """Ingest's exclusions as warnings (the run goes on without them); a phase nobody annotated is not news."""
    out = []
    annotated = {ph for ph, s in src.items() if set(s) - {"image"}}
    for e in excl.to_dict("records"):
        if e["phase"] and e["reason"].startswith("missing phase") and e["phase"] not in annotated:
            continue
        if e.get("stage") == "note":
            out.append(problem("warning", e["reason"], "", patient=pid, file=e["file"] or None))
            continue
        if e.get("stage") == "skipped":
            out.append(problem("warning", f"a file of the DICOM folder was {e['reason']}", "nothing to do if the "
                               "file is not a slice; else replace it with the exported file", patient=pid,
                               file=e["file"] or None))
            continue
        out.append(problem("warning", f"excluded at ingest: {e['reason']}", "see results/ingest/series.tsv after the "
                           "run; fix the files or map the series in ingest.phase_map", patient=pid,
                           phase=e["phase"] or None, file=e["file"] or None))
    return out


# ------------------------------------------------------------------------------------------ cache

def _signature(rec: dict) -> list:
    """What a survey depends on in the file system: every folder's modification time under the patient's
    DICOM folder (files added, removed or renamed change it), and each named file's size and time."""
    sig = []
    d = rec.get("dicom_dir")
    if isinstance(d, str) and os.path.isdir(d):
        for root, dirs, files in os.walk(d):
            dirs.sort()
            st = os.stat(root)
            sig.append([os.path.relpath(root, d), st.st_mtime_ns, len(files)])
    for k, v in sorted(rec.items()):
        if isinstance(v, str) and (k == "annotation_dir" or re.match(r"^(image|mask|labelme|polygons|rtstruct)_", k)):
            try:
                st = os.stat(v)
                sig.append([k, st.st_size, st.st_mtime_ns])
            except OSError:
                sig.append([k, None])
            if k == "annotation_dir" and os.path.isdir(v):
                for root, dirs, files in os.walk(v):
                    dirs.sort()
                    for f in sorted(files):
                        try:
                            st = os.stat(os.path.join(root, f))
                        except OSError:
                            continue
                        sig.append([os.path.relpath(os.path.join(root, f), v), st.st_size, st.st_mtime_ns])
    return sig


def _code_hash() -> str:
    from .deps import closure

    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in closure(str(here), SURVEY_MODULES):
        h.update((here / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def survey_key(rec: dict, cfg: dict, code: str) -> str:
    row = {k: v for k, v in rec.items() if isinstance(v, (str, int, float)) and v == v}
    parts = {"row": row, "sig": _signature(rec), "code": code,
             "cfg": {k: cfg.get(k) for k in ("ingest", "rtstruct_roi", "rtstruct_link", "mask_label", "privacy")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def survey_cohort(records: list[dict], cfg: dict, cache: Path | None = CACHE, workers: int = 1,
                  write: bool = True) -> dict[str, dict]:
    """Every patient's survey, from the cache where its key matches, the rest computed (in ``workers``
    processes) and written back."""
    code = _code_hash()
    old = {}
    if cache is not None and cache.exists():
        try:
            old = json.loads(cache.read_text())
        except ValueError:
            old = {}
    keys = {r["patient_id"]: survey_key(r, cfg, code) for r in records}
    out, todo = {}, []
    for r in records:
        hit = old.get(r["patient_id"])
        if hit and hit.get("key") == keys[r["patient_id"]]:
            out[r["patient_id"]] = hit["survey"]
        else:
            todo.append(r)
    if todo:
        if workers > 1 and len(todo) > 2:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as ex:
                done = list(ex.map(survey_safely, todo, [cfg] * len(todo)))
        else:
            done = [survey_safely(r, cfg) for r in todo]
        for r, s in zip(todo, done):
            out[r["patient_id"]] = s
        if cache is not None and write:
            from .outputs import write_text

            keep = {p: {"key": keys[p], "survey": out[p]} for p in out}
            write_text(cache, json.dumps(keep, sort_keys=True))
    return out


# ------------------------------------------------------------------------------------------ the plan

def user_configs(paths: list) -> list[dict]:
    from .studyconfig import load_yaml

    out = []
    for p in paths or []:
        try:
            out.append(load_yaml(p) or {})
        except (OSError, ValueError):
            out.append({})
    return out


def cohort_facts(cohort: pd.DataFrame, surveys: dict[str, dict], cfg: dict, source: str) -> dict:
    """Counts the derived config is made from: patients with an image / a tumour outline per phase, patients
    per annotation format, the cohort's columns (with those the geometry stage adds)."""
    from .cohort import GEOMETRY_TO_COHORT, patient_sources

    imaged = {p: 0 for p in ALL_PHASES}
    outlined = {p: 0 for p in ALL_PHASES}
    formats: dict[str, int] = {}
    any_images = False
    common: set[str] | None = None  # the phases every imaged patient has
    for rec in cohort.to_dict("records"):
        pid = rec["patient_id"]
        src = patient_sources(rec, ALL_PHASES, assume_layout=source == "demo")
        if source == "demo":
            ok = set(ALL_PHASES)
        elif pid in surveys:
            ok = {ph for ph, i in surveys[pid]["images"].items() if i["status"] == "ok"}
        else:  # KiTS: a volume file per phase, when the case folder has one
            ok = {ph for ph, s in src.items() if "image" in s}
        any_images |= bool(ok)
        if ok:
            common = set(ok) if common is None else common & ok
        seen = set()
        for ph in ALL_PHASES:
            imaged[ph] += ph in ok
            fm = set(src.get(ph, {})) - {"image"}
            outlined[ph] += bool(fm & {"mask", "rtstruct", "polygons"})
            seen |= fm
        for f in seen:
            formats[f] = formats.get(f, 0) + 1
    cols = set(cohort.columns)
    if cfg.get("geometry", {}).get("enabled"):
        cols |= set(GEOMETRY_TO_COHORT.values()) | {"side"}
    return {"imaged": imaged, "outlined": outlined, "formats": formats, "columns": sorted(cols),
            "any_images": any_images, "common": sorted(common or [])}


def resolve_source(cfg: dict) -> str:
    c = cfg["cohort"]
    if c.get("source", "auto") != "auto":
        return c["source"]
    return "sheet" if c.get("sheet") else "kits" if c.get("kits") else "demo"


def plan(config: dict, *, configfiles: list | None = None, workers: int = 1, cache: Path | None = CACHE,
         write_cache: bool = True, demo_root: str = "resources/demo_cohort") -> Plan:
    """The study's plan: config problems, the cohort and its survey, the derived config, and every problem."""
    from . import demo as ccdemo
    from . import kits as cckits
    from .cohort import cohort_problems
    from .privacy import settings as privacy_settings
    from .studyconfig import apply_replace, config_problems, derive_config, schema_problems, split_size_problems
    from .weights import missing_weights

    cfg = json.loads(json.dumps(config))  # a plain copy
    probs = apply_replace(cfg, user_configs(configfiles or []))
    cfg["privacy"] = privacy_settings(cfg.get("privacy"))
    probs += schema_problems(cfg)
    if [p for p in probs if p.level == "error"]:
        return Plan(cfg, pd.DataFrame(columns=["patient_id"]), "", probs)
    source = resolve_source(cfg)
    cfg["cohort"]["source"] = source
    surveys: dict[str, dict] = {}
    if source == "demo":
        cohort = ccdemo.draw_cohort(cfg["demo"], cfg["cohort"]["high_grade_from"], demo_root)
        cohort, p = cohort_problems(cohort, cfg, file="demo cohort", check_paths=False)
        sheet = f"{demo_root}/cohort.tsv"
    elif source == "kits":
        kits = cfg["cohort"].get("kits") or {}
        try:
            kjson = str(cckits.find_json(kits["root"]))
            table, _ = cckits.load_kits(kits["root"], kits.get("histology", "clear_cell_rcc"))
            cohort, p = cohort_problems(cckits.kits_sources(table, kits.get("phase", "cmp")), cfg, file=kjson)
        except (CcgradeError, KeyError) as e:
            return Plan(cfg, pd.DataFrame(columns=["patient_id"]), "", probs + [
                Problem("error", str(e), "check config key cohort.kits.root")])
        sheet = "results/cohort/kits_sheet.tsv"
    else:
        sheet = cfg["cohort"].get("sheet") or ""
        cohort, surveys, p = sheet_cohort(sheet, cfg, "cohort.sheet", cache=cache, workers=workers,
                                          write_cache=write_cache)
        if cohort is None:
            return Plan(cfg, pd.DataFrame(columns=["patient_id"]), sheet, probs + p)
    probs += p
    facts = cohort_facts(cohort, surveys, cfg, source) if "patient_id" in cohort else {}
    if [x for x in probs if x.level == "error"]:
        return Plan(cfg, cohort, sheet, probs, surveys, facts)
    links: dict[str, int] = {}
    for sv in surveys.values():
        for how in (sv.get("links") or {}).values():
            if how:
                links[how] = links.get(how, 0) + 1
    facts["links"] = links
    derived, notes = derive_config(cfg, facts)
    probs += notes
    if not [x for x in notes if x.level == "error"]:
        probs += config_problems(derived)
        probs += missing_weights(derived)
        need = set(derived["splits"]["require_phases"])
        eligible = len(cohort) if source != "sheet" else sum(
            need <= {ph for ph, i in surveys.get(pid, {}).get("images", {}).items() if i["status"] == "ok"}
            for pid in cohort["patient_id"])
        facts["eligible"] = eligible
        probs += split_size_problems(derived, eligible)
        pred, members, pp = predict_cohort(derived, cache=cache, workers=workers, write_cache=write_cache,
                                           demo_root=demo_root)
        probs += pp
        ext, _cells, pe = external_cohort(derived, cache=cache, workers=workers, write_cache=write_cache)
        probs += pe
        return Plan(derived, cohort, sheet, probs, surveys, facts, pred, members, ext)
    return Plan(derived, cohort, sheet, probs, surveys, facts)


def predict_cohort(cfg: dict, *, cache: Path | None = CACHE, workers: int = 1, write_cache: bool = True,
                   demo_root: str = "resources/demo_cohort") -> tuple[pd.DataFrame, list[dict], list[Problem]]:
    """The new patients of ``predict`` (predict.sheet, surveyed like the cohort and checked against what the
    model reads; with the demo and no sheet, ``predict.demo_patients`` synthetic patients drawn after the
    cohort's), the ensemble's cells, and every problem."""
    from . import demo as ccdemo
    from .predict import model_cells, sheet_problems

    pc = cfg["predict"]
    empty = pd.DataFrame(columns=["patient_id", "grade", "grade_group"])
    source = cfg["cohort"]["source"]
    if not pc["sheet"] and source != "demo":
        return empty, [], []
    members, probs = model_cells(cfg)
    if not pc["sheet"] and probs:  # the demo's new patients are an extra, not asked for: said, not an error
        return empty, [], [Problem("skipped", f"predict: the demo's new patients are not drawn, as {x.message}",
                                   x.fix + " to grade them (snakemake predict)") for x in probs]
    if not pc["sheet"]:
        n = cfg["demo"]["n_patients"]
        demo = {**cfg["demo"], "n_patients": n + pc["demo_patients"]}
        return ccdemo.draw_cohort(demo, cfg["cohort"]["high_grade_from"], demo_root, start=n), members, probs
    sheet = pc["sheet"]
    # said to be of the new patients (their IDs may be the cohort's too), with their own survey cache
    cohort, surveys, p = sheet_cohort(sheet, cfg, "predict.sheet", cache=cache.with_name("survey_predict.json")
                                      if cache else None, workers=workers, write_cache=write_cache,
                                      grade_optional=True, prefix="predict.sheet: ")
    probs += p
    if cohort is None or [x for x in p if x.level == "error"] or "patient_id" not in cohort:
        return empty if cohort is None else cohort, members, probs
    return cohort, members, probs + sheet_problems(cohort, surveys, cfg, members, sheet)


def external_cohort(cfg: dict, *, cache: Path | None = CACHE, workers: int = 1, write_cache: bool = True,
                    ) -> tuple[pd.DataFrame, list[dict], list[Problem]]:
    """The external cohort (config ``external``): its sheet, surveyed like the cohort's (grades required), or
    with the demo and no sheet the demo's shifted centre; every trained cell (each is evaluated on it
    unchanged) and every problem. A patient lacking what a model reads is a warning: that model is evaluated
    without the patient, and the table says how many it had."""
    from . import demo as ccdemo
    from .matrix import cells
    from .predict import sheet_problems

    ec = cfg["external"]
    empty = pd.DataFrame(columns=["patient_id", "grade", "grade_group"])
    members = cells(cfg)
    demo = not ec["sheet"] and cfg["cohort"]["source"] == "demo" and ec["demo"]["n_patients"] > 0
    if not (ec["sheet"] or demo) or not members:
        return empty, [], []
    if demo:
        settings = ccdemo.external_settings(cfg["demo"], ec["demo"], ec["name"])
        return ccdemo.draw_cohort(settings, cfg["cohort"]["high_grade_from"], external_demo_root(ec["name"])), \
            members, []
    sheet = ec["sheet"]
    cohort, surveys, probs = sheet_cohort(sheet, cfg, "external.sheet", cache=cache.with_name("survey_external.json")
                                          if cache else None, workers=workers, write_cache=write_cache,
                                          prefix="external.sheet: ")
    if cohort is None or [x for x in probs if x.level == "error"] or "patient_id" not in cohort:
        return empty if cohort is None else cohort, members, probs
    return cohort, members, probs + external_problems(cohort, surveys, cfg, members, sheet)


def external_problems(cohort: pd.DataFrame, surveys: dict[str, dict], cfg: dict, members: list[dict], sheet: str
                      ) -> list[Problem]:
    """One warning per external patient that some models cannot grade (a phase they read not among its
    images, no annotation their ROI setting reads where they place the crop): how many models, which, and
    what is missing. Those models are evaluated without the patient; the others grade it."""
    from .cohort import patient_sources, pick_source
    from .predict import needs

    models = {(c["study"], c["roi"], c["arch"], c["phases"], c["variant"]): c for c in members}
    out = []
    for rec in cohort.to_dict("records"):
        pid = rec["patient_id"]
        images = (surveys.get(pid) or {}).get("images", {})
        usable = sorted(p for p, i in images.items() if i.get("status") == "ok")
        src = patient_sources(rec, list(cfg["phases"]))
        lost, no_image, no_outline = [], set(), set()
        for cell in models.values():
            need = needs(cfg, cell)
            roi = cfg["rois"][need["roi"]]
            mi = {ph for ph in need["images"] if images.get(ph, {}).get("status") != "ok"}
            ma = {(need["roi"], ph) for ph in need["outlines"] if pick_source(roi, src.get(ph, {}))[1] is None}
            if mi or ma:
                lost.append(f"{cell['study']} {cell['arch']} on {cell['phases']} ({cell['roi']}"
                            + (f", {cell['variant']})" if cell["variant"] != "base" else ")"))
                no_image |= mi
                no_outline |= ma
        if not lost:
            continue
        what = []
        if no_image:
            what.append(f"phase(s) {', '.join(p for p in cfg['phases'] if p in no_image)} not among its images "
                        f"(usable: {', '.join(usable) or 'none'})")
        if no_outline:
            rois = sorted({r for r, _ in no_outline})
            what.append("no annotation " + "; ".join(
                f"{r} reads on {', '.join(p for p in cfg['phases'] if (r, p) in no_outline)}" for r in rois))
        shown = ", ".join(dict.fromkeys(lost))
        x = problem("warning", f"{len(lost)} of {len(models)} models cannot grade this patient "
                                      f"and are evaluated without it ({shown}): {'; '.join(what)}",
                           "add the series (or map it with ingest.phase_map) and the annotations (sheet columns or "
                           "annotation_dir) if the centre has them; otherwise the tables count the patient as not "
                           "graded by those models", patient=pid, file=sheet)
        out.append(Problem(x.level, f"external.sheet: {x.message}", x.fix))
    return out


def external_demo_root(name: str) -> str:
    """Where the demo's external centre is written (apart from the cohort's patients)."""
    return f"resources/demo_external/{name}"


def sheet_cohort(sheet: str, cfg: dict, key: str, *, cache: Path | None, workers: int = 1, write_cache: bool = True,
                 grade_optional: bool = False, prefix: str = "") -> tuple[pd.DataFrame | None, dict, list[Problem]]:
    """A cohort sheet read and checked, and every patient's headers surveyed whatever else is wrong (all
    problems in one run): (cohort, surveys, problems), the cohort None when the sheet cannot be read (config
    key ``key`` names it). ``prefix`` starts the survey's messages (another sheet than the cohort's)."""
    from .cohort import cohort_problems, read_sheet

    try:
        raw = read_sheet(sheet)
    except CohortError as e:
        return None, {}, [Problem("error", f"{prefix}{e}", f"check config key {key}")]
    cohort, probs = cohort_problems(raw, cfg, file=sheet, base=Path(sheet).parent, grade_optional=grade_optional)
    surveys: dict[str, dict] = {}
    if "patient_id" in cohort:
        recs = list({r["patient_id"]: r for r in cohort.to_dict("records")}.values())
        surveys = survey_cohort(recs, cfg, cache, workers, write_cache)
        for pid in surveys:
            probs += [Problem(x["level"], prefix + x["message"], x["fix"]) for x in surveys[pid]["problems"]]
    return cohort, surveys, probs


# ------------------------------------------------------------------------------------------ the report

def resource_value(r) -> int | None:
    """A global resource as Snakemake holds it (a number, or an object with ``.value``), as an int."""
    try:
        return None if r is None else int(getattr(r, "value", r))
    except (TypeError, ValueError):
        return None


def key_problems(privacy: dict) -> list[Problem]:
    """The study's privacy key, when it exists and is too weak to keep pseudonyms secret (``privacy.key_problem``)."""
    from .privacy import SECRET_NAME, key_fix, key_problem

    path = Path(privacy["dir"]) / SECRET_NAME
    if privacy["mode"] != "pseudonymise" or not path.is_file():
        return []
    weak = key_problem(path.read_text())
    return [problem("error", f"the privacy key {weak}", key_fix(path), file=str(path))] if weak else []


def gpu_slot_problems(gpu: int | None, slots: int, executor: str = "local") -> list[Problem]:
    """``--resources gpu=N`` against ``training.gpu_slots`` on one machine: N cells train at once on the
    one GPU (Snakemake hands out no device numbers), each planning for 1/gpu_slots of its memory. A
    cluster executor gives each cell a GPU of its own (SLURM: --gpus=1), so there the two are unrelated."""
    if gpu is None or executor not in ("local", "dryrun", "touch", ""):
        return []
    if gpu > slots:
        return [Problem("warning", f"--resources gpu={gpu} runs {gpu} training cells at once on this machine's "
                        f"GPU, but training.gpu_slots is {slots}: each plans for 1/{slots} of its memory, so "
                        "together they can run out of it",
                        f"set training.gpu_slots: {gpu} (cells sharing one GPU), or run with --resources gpu={slots}")]
    if slots > gpu:
        return [Problem("warning", f"training.gpu_slots is {slots} but --resources gpu={gpu}: at most {gpu} cell(s) "
                        f"train at once, each within 1/{slots} of the GPU's memory",
                        f"run with --resources gpu={slots}")]
    return []


def report(p: Plan, limit: int = 60) -> str:
    """The pre-flight report: a summary line, then every problem (errors first), each with its fix."""
    cfg = p.config
    n = len(p.cohort)
    studies = ", ".join(cfg.get("training", {}).get("studies", {})) or "none"
    head = (f"ccgrade pre-flight: {n} patients ({cfg.get('cohort', {}).get('source', '?')}), phases "
            f"{cfg['phases'] if isinstance(cfg.get('phases'), list) else '?'}, studies: {studies}")
    order = {"error": 0, "warning": 1, "skipped": 2}
    probs = sorted(p.problems, key=lambda x: order.get(x.level, 3))
    counts = {lv: sum(x.level == lv for x in probs) for lv in order}
    lines = [head]
    links = p.facts.get("links") or {}
    if links:
        lines.append("  RTSTRUCTs: contours linked to slices by " + ", ".join(
            f"{'plane position' if k == 'position' else 'SOP UID' if k == 'uid' else k} ({v})"
            for k, v in sorted(links.items())) + " (rtstruct_link: " + str(cfg.get("rtstruct_link", "auto")) + ")")
    if probs:
        lines.append("  " + ", ".join(f"{v} {k}" + ("s" if v != 1 and k != "skipped" else "")
                                      for k, v in counts.items() if v))
    for x in probs[:limit]:
        lines.append("  " + str(x).replace("\n", "\n  "))
    if len(probs) > limit:
        lines.append(f"  ... and {len(probs) - limit} more (the full list: {CACHE.parent / 'preflight.txt'})")
    if counts["error"]:
        lines.append(f"{counts['error']} error(s): nothing was run. Fix them and run again (what is already computed "
                     "is kept).")
    return "\n".join(lines)


#: the front half's target rules and the files below them: what each needs of the plan (``Problem.scope``)
FRONT_TARGETS = {"ingest": (paths.SERIES_TABLE.rsplit("/", 1)[0] + "/", paths.VOLUMES.split("{")[0], "resources/"),
                 "crops": (paths.CROP_MANIFEST.rsplit("/", 1)[0] + "/", "results/geometry/")}


def front_scopes(targets: set[str] | frozenset[str]) -> set[str]:
    """The problem scopes the asked-for targets do not need: none for the default target (or anything past
    the front half); "crops" and "study" when only ingest is asked for; "study" when only crops."""
    def part(t: str) -> str | None:
        return next((name for name, heads in FRONT_TARGETS.items() if t == name or t.startswith(heads)), None)

    parts = [part(str(t)) for t in targets]
    if not parts or None in parts:
        return set()
    return {"crops", "study"} if set(parts) == {"ingest"} else {"study"}


def for_targets(p: Plan, targets: set[str] | frozenset[str]) -> Plan:
    """``p`` with the errors the asked-for targets do not need (``front_scopes``) as warnings that say so:
    one patient, or a cohort without annotations, can still be ingested (and with annotations, cropped)."""
    scopes = front_scopes(targets)
    if scopes:
        p.problems = [Problem("warning", f"{x.message} (not needed for {', '.join(sorted(targets))})", x.fix, x.scope)
                      if x.level == "error" and x.scope in scopes else x for x in p.problems]
    return p


def check(p: Plan, out=sys.stderr, full_report: Path | None = CACHE.parent / "preflight.txt") -> None:
    """Print the report; raise ConfigError (listing the errors) when there are any."""
    text = report(p)
    print(text, file=out)
    if full_report is not None:
        try:
            from .outputs import write_text

            write_text(full_report, report(p, limit=10**9) + "\n")
        except OSError:
            pass
    if p.errors:
        raise ConfigError(f"the pre-flight check found {len(p.errors)} error(s), listed above; no job was run")


# ------------------------------------------------------------------------------------------ failed jobs

def job_errors(snakemake_log: str | Path | list, limit: int = 20) -> list[str]:
    """For a Snakemake run's log (a path, or the list Snakemake's ``onerror`` passes): each failed job's rule
    and the ccgrade error message in its own log (or the last line of a traceback), so that the console shows
    why, not only where the log is."""
    paths = [snakemake_log] if isinstance(snakemake_log, (str, Path)) else list(snakemake_log or [])
    text = "\n\n".join(Path(p).read_text(errors="replace") for p in paths if p and Path(p).exists())
    out = []
    for m in re.finditer(r"Error in rule (\w+):(.*?)(?=\n\n|\Z)", text, re.S):
        rule, block = m.group(1), m.group(2)
        log = re.search(r"log: (\S+)", block)
        msg = ""
        if log:
            path = Path(log.group(1).rstrip(","))
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()
                hits = [ln for ln in lines if re.match(r"^ccgrade\.errors\.\w+: ", ln)]
                msg = hits[-1].split(": ", 1)[1] if hits else next(
                    (ln for ln in reversed(lines) if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", ln)), "")
        out.append(f"rule {rule}: {msg or 'see ' + (log.group(1) if log else 'the log')}")
        if len(out) >= limit:
            break
    return out
