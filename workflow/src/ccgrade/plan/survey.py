"""The header survey of a sheet's patients, and its cache.

A patient's survey is what can be known of its files from cheap header reads: the DICOM header index (which
phases its series give, as ingest assigns them; ingest's exclusions as warnings), image geometry headers, the
sheet's ID against the identifiers in the DICOM headers, and the annotation checks (``annotation_checks``:
masks, RTSTRUCT ROI names and references and how their contours link, labelme and polygon files). It gives the
facts the plan derives the config from and the problems a job would meet, each naming the patient, phase and
file.

The survey of a patient is cached (``.snakemake/ccgrade/survey.json`` beside Snakemake's own state, never in
``results/``: it holds file names) under a key made of the patient's sheet row, the modification times of
the folders and files it names, the config keys it depends on and the code that computes it
(``SURVEY_MODULES``), so a no-op rerun reads headers of nobody.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd

from ccgrade import PHASE_NAMES
from ccgrade.errors import CcgradeError, Problem, problem
from ccgrade.plan.annotation_checks import labelme_check, mask_check, polygons_check, rtstruct_check, rtstruct_roi_names
from ccgrade.plan.grids import grid_of_header, grid_of_series

ALL_PHASES = list(PHASE_NAMES)
CACHE = Path(".snakemake") / "ccgrade" / "survey.json"
#: the modules whose logic decides a survey (a change invalidates the cache): these and what they import
SURVEY_MODULES = ("plan.survey", "ingest.patient", "annotations.rtstruct", "config.cohort", "annotations.readers")


def survey_patient(rec: dict, cfg: dict) -> dict:
    """One patient's facts and problems from headers alone: the phases its images give (DICOM as the header
    index assigns them), the annotation formats per phase, and what would go wrong in a job."""
    from ccgrade.config.cohort import patient_sources

    pid = rec["patient_id"]
    # files that do not exist are the sheet check's errors already: the survey reads what is there
    src = {ph: {k: v for k, v in s.items() if Path(v).exists()} for ph, s in patient_sources(rec, ALL_PHASES).items()}
    images, probs = _survey_images(rec, cfg, src)
    links: dict[str, str] = {}
    roi_names: dict[str, list[str]] = {}
    for ph, s in src.items():
        img = images.get(ph)
        if "mask" in s:
            probs += mask_check(s["mask"], img, pid, ph)
        if "rtstruct" in s:
            p, links[ph] = rtstruct_check(s["rtstruct"], img or {}, pid, ph, cfg.get("rtstruct_roi") or "tumou?r",
                                          cfg.get("rtstruct_link", "auto"))
            probs += p
            roi_names[ph] = rtstruct_roi_names(s["rtstruct"])
        dicom_img = img if img and img.get("status") == "ok" and img.get("sop_uids") else None
        if "labelme" in s and Path(s["labelme"]).is_dir():
            probs += labelme_check(Path(s["labelme"]), dicom_img, pid, ph)
        if "polygons" in s:
            probs += polygons_check(s["polygons"], dicom_img, pid, ph)
    return {"images": {ph: {k: v for k, v in i.items() if k not in ("sop_uids", "file_names")}
                       for ph, i in images.items()},
            "annotations": {ph: sorted(k for k in s if k != "image") for ph, s in src.items()},
            "links": links, "roi_names": roi_names, "problems": [p.__dict__ for p in probs]}


def _survey_images(rec: dict, cfg: dict, src: dict[str, dict]) -> tuple[dict[str, dict], list[Problem]]:
    """Per phase, what the header index makes of the patient's images (status, series and frame UIDs, slice
    UIDs, grid), and the index's notes and identity problems."""
    from ccgrade.ingest import patient as ingest

    pid, probs, images = rec["patient_id"], [], {}
    files = {ph: s["image"] for ph, s in src.items() if "image" in s}
    dicom = rec.get("dicom_dir") if isinstance(rec.get("dicom_dir"), str) and Path(rec["dicom_dir"]).is_dir() else None
    if not (dicom or files):
        return images, probs
    mapping = None
    if cfg["ingest"].get("phase_map"):
        mapping = pd.read_csv(cfg["ingest"]["phase_map"], sep="\t", dtype=str, keep_default_na=False)
    try:
        res = ingest.index_patient(dicom, pid, {**cfg["ingest"], "on_bad_series": "exclude"}, ALL_PHASES, mapping, files)
    except CcgradeError as e:
        return images, [Problem("error", str(e), "check the patient's dicom_dir")]
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
    return images, probs


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
    """What a survey depends on in the file system: under the patient's DICOM folder every folder's file names,
    sizes and modification times (a digest per folder: files added, removed, renamed or rewritten in place, as
    a re-anonymisation does, change it), and each named file's size and time."""
    sig = []
    d = rec.get("dicom_dir")
    if isinstance(d, str) and os.path.isdir(d):
        for root, dirs, files in os.walk(d):
            dirs.sort()
            h = hashlib.sha1()
            for f in sorted(files):
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
            sig.append([os.path.relpath(root, d), len(files), h.hexdigest()])
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
    from ccgrade.deps import code_digest

    return code_digest(Path(__file__).parents[1], *SURVEY_MODULES)


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
            from ccgrade.outputs import write_text

            keep = {p: {"key": keys[p], "survey": out[p]} for p in out}
            write_text(cache, json.dumps(keep, sort_keys=True))
    return out


def cross_patient_problems(surveys: dict[str, dict]) -> list[Problem]:
    """What only the cohort as a whole shows: one DICOM series under two patient IDs (a copy or a misfiled
    export: the same images could land in both training and test), and a patient whose tumour outline names a
    phase its images do not give while another phase's image has no annotation (often a column named for the
    wrong phase)."""
    owners: dict[str, list[str]] = {}
    for pid, sv in surveys.items():
        for ph, img in sv.get("images", {}).items():
            uid = str(img.get("series_uid") or "")
            if img.get("status") == "ok" and uid and not uid.startswith("file:"):
                owners.setdefault(uid, []).append(f"{pid} ({ph})")
    out = [Problem("error", f"patients {', '.join(sorted(set(o)))} have the same DICOM series: the same images under "
                   "two patient IDs would be split as two patients", "keep the series under its own patient only "
                   "(remove the copied folder, or correct the sheet's dicom_dir)", scope="study")
           for o in owners.values() if len({x.split(' (')[0] for x in o}) > 1]
    for pid, sv in sorted(surveys.items()):
        imaged = {ph for ph, i in sv.get("images", {}).items() if i.get("status") == "ok"}
        notes = {ph: fm for ph, fm in sv.get("annotations", {}).items() if fm}
        orphans = sorted(ph for ph in notes if ph not in imaged)
        bare = sorted(ph for ph in imaged if ph not in notes)
        if orphans and bare:
            out.append(problem(
                "warning", f"the {'/'.join(orphans)} annotation ({', '.join(notes[orphans[0]])}) has no image of "
                f"that phase, while the {'/'.join(bare)} image has no annotation", f"if it was drawn on the "
                f"{bare[0]} series, name its column {notes[orphans[0]][0]}_{bare[0]}; if the series is the "
                f"{orphans[0]} phase, map it so in ingest.phase_map", patient=pid))
    return out
