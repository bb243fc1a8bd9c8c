"""DICOM ingest: a header-only index, phase assignment, geometry checks, and HU volumes as NIfTI.

Stage 1 (``index``) reads headers only (``defer_size``; pixel data is never loaded) and writes, per
patient, a slice index, a reviewable series table with the phase each series was given and why, and
one row per configured phase saying whether it is usable. Stage 2 (``convert``) reads the pixels of
the chosen series, applies the rescale, sorts by position along the slice normal and writes NIfTI.
PHI (names, birth dates, institutions, accession numbers) is never copied into any output.

This module holds the two stages and their command line; the parts are modules of their own:
``ingest_index`` (the header index, pydicom), ``ingest_series`` (per-series geometry, role and codec
checks), ``ingest_phases`` (phase assignment and the choice among reconstructions) and
``ingest_volumes`` (the pixels, as HU).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from ccgrade.errors import DicomError
from ccgrade.ingest.index import find_dicom_files, index_folder, SLICE_COLUMNS
from ccgrade.ingest.phases import assign_phases, choose_phases, PHASE_COLUMNS
from ccgrade.ingest.series import summarise_series
from ccgrade.ingest.volumes import image_file_phase, read_image_file, read_volume
from ccgrade.outputs import atomic_path, write_tsv
from ccgrade.privacy.pseudonyms import Keyer, run_scrubbed, safe_text, scrub_frame, text_words


def index_patient(folder: str | Path | None, patient: str, cfg_ingest: dict, phases: list[str],
                  mapping: pd.DataFrame | None = None, images: dict[str, str] | None = None,
                  key=None) -> dict[str, pd.DataFrame]:
    """Index one patient: the DICOM folder's slice index and series table with phases, plus any per-phase
    image volumes (which take precedence for their phase); a phase table and the exclusions."""
    images = images or {}
    if folder is not None:
        slices, problems = index_folder(folder, patient)
    else:
        slices, problems = pd.DataFrame(columns=SLICE_COLUMNS + ["dropped"]), []
    if slices.empty:
        series = pd.DataFrame(columns=["patient_id", "series_uid", "status", "phase"])
        if folder is not None:
            problems.append({"patient_id": patient, "phase": "", "file": str(folder), "stage": "index",
                             "reason": "no readable DICOM files in the patient's folder"})
    else:
        series = assign_phases(summarise_series(slices, cfg_ingest["spacing_tolerance"], problems), cfg_ingest, mapping,
                               key)
    phase_table, excl, series = choose_phases(series, [p for p in phases if p not in images], patient,
                                              cfg_ingest.get("reconstruction"))
    problems = [{k: v for k, v in p.items() if k not in ("series_uid", "attach")} for p in problems]
    file_rows = [image_file_phase(images[p], patient, p) for p in phases if p in images]
    excl += [{"patient_id": patient, "phase": r["phase"], "file": Path(images[r["phase"]]).name, "stage": "ingest",
              "reason": r["reason"]} for r in file_rows if r["status"] != "ok"]
    phase_table = pd.concat([phase_table, pd.DataFrame(file_rows)], ignore_index=True) if file_rows else phase_table
    phase_table = phase_table.set_index("phase").loc[list(phases)].reset_index()[PHASE_COLUMNS]
    excl = problems + excl
    bad = [e for e in excl if e["stage"] not in ("skipped", "note")]  # a skipped file (FIFO, empty) or a note
    # (a linked folder) is no series' problem
    if cfg_ingest.get("on_bad_series") == "error" and bad:
        e = bad[0]
        raise DicomError(e["reason"], patient=patient, phase=e["phase"] or None, file=e["file"] or None)
    return {"slices": slices, "series": series, "phases": phase_table,
            "exclusions": pd.DataFrame(excl, columns=["patient_id", "phase", "file", "stage", "reason"])}


def convert_patient(folder: str | Path | None, patient: str, index_dir: str | Path, outdir: str | Path,
                    images: dict[str, str] | None = None, key=None) -> pd.DataFrame:
    """Write ``{phase}.nii.gz`` and ``{phase}.slices.tsv`` for every usable phase; return the phase table.

    A pseudonymised index (see ``pseudonymise_index``) names files by label: each is found again by the
    keyed hash of its path (``file_key``), and the volume's slice table keeps the label and the name key."""
    index_dir, outdir, images = Path(index_dir), Path(outdir), images or {}
    phases = pd.read_csv(index_dir / "phases.tsv", sep="\t", keep_default_na=False)
    slices = pd.read_csv(index_dir / "slices.tsv", sep="\t", keep_default_na=False,
                         dtype={"iop": str, "file": str, "sop_uid": str, "series_uid": str, "patient_id": str})
    for col in ("pixel_offset", "pixel_bytes_needed"):  # empty for encapsulated (compressed) pixel data
        slices[col] = pd.to_numeric(slices[col], errors="coerce")
    labels: dict[str, str] = {}
    if "file_key" in slices and folder is not None:
        here = {key.key("file", str(p.relative_to(folder))): str(p.relative_to(folder))
                for p in find_dicom_files(folder)}
        lost = sorted(set(slices["file_key"]) - set(here))
        if lost:
            raise DicomError(f"{len(lost)} indexed file(s) are no longer in the DICOM folder (or the privacy key "
                             "changed): the folder changed after it was indexed; rerun the index job", patient=patient)
        labels = dict(zip((here[k] for k in slices["file_key"]), slices["file"]))
        slices["file"] = [here[k] for k in slices["file_key"]]
    outdir.mkdir(parents=True, exist_ok=True)
    for r in phases.itertuples():
        if r.status != "ok":
            continue
        if str(r.series_uid).startswith("file:"):
            if r.phase not in images:
                raise DicomError("the phase table names an image file but none was given to convert", patient=patient,
                                 phase=r.phase)
            img, table = read_image_file(images[r.phase], patient, r.phase)
            if key is not None and key.active:
                table["file"] = [f"the {r.phase} image#{k}" for k in table["k"]]
        else:
            used = (slices["series_uid"] == r.series_uid) & (slices["dropped"] == "")
            img, table = read_volume(folder, slices[used], patient, r.phase)
            if labels:
                table["name_key"] = [key.key("name", Path(f).stem) for f in table["file"]]
                table["file"] = [labels[f] for f in table["file"]]
        with atomic_path(outdir / f"{r.phase}.nii.gz") as tmp:
            sitk.WriteImage(img, str(tmp), True, 1)
        write_tsv(outdir / f"{r.phase}.slices.tsv", table)
    write_tsv(outdir / "phases.tsv", phases)
    return phases


def file_labels(folder: str | Path | None, images: dict[str, str] | None = None) -> dict[str, str]:
    """Role-and-index names of a patient's input files (``file 12``: the twelfth DICOM file of the patient's
    folder in path order; ``the cmp image``), keyed by every spelling of the original a message may hold
    (its path inside the folder, its full path, the folder itself)."""
    out: dict[str, str] = {}
    if folder is not None and Path(folder).is_dir():
        folder = Path(folder)
        for i, p in enumerate(find_dicom_files(folder), 1):
            out[str(p)] = out[str(p.relative_to(folder))] = f"file {i}"
        out[str(folder)] = "the patient's DICOM folder"
    for ph, path in (images or {}).items():
        out[str(path)] = out[Path(path).name] = f"the {ph} image"
    return out


#: the slice index's UID columns, pseudonymised as keyed ``2.25.`` UIDs
_UID_COLUMNS = ("series_uid", "sop_uid", "study_uid", "frame_uid")
_LOOKUP_COLUMNS = ["patient_id", "kind", "pseudonym", "original"]


def _series_pseudonym(v: object, key, image_series: dict[str, str]) -> str:
    """A series UID's pseudonym: the image's name for a per-phase image, else its keyed UID (blanks kept)."""
    v = str(v)
    return image_series.get(v, key.uid(v)) if v not in ("", "nan") else v


def _time_offsets(t: pd.DataFrame, t0: float) -> None:
    """Acquisition and bolus times of ``t``, in place, as seconds after ``t0`` (the first acquisition)."""
    if t0 == t0 and len(t):
        for c in ("acq_s", "bolus_s"):
            t[c] = pd.to_numeric(t[c], errors="coerce") - t0


def _missing(v: object) -> bool:
    """Whether a header number is absent (None or NaN)."""
    return v is None or v != v


def _slice_file_labels(sl: pd.DataFrame, labels: dict[str, str]) -> dict[str, str]:
    """Each slice file's label: its index label plus the series and instance numbers a viewer shows,
    e.g. ``file 12 (series 3, instance 7)``."""
    file_label = {}
    for r in sl.itertuples():
        base = labels.get(str(r.file), f"file {r.Index + 1}")
        sn = "" if _missing(r.series_number) else f"series {int(r.series_number)}"
        inst = "" if _missing(r.instance_number) else f"instance {int(r.instance_number)}"
        file_label[str(r.file)] = base + (f" ({', '.join(x for x in (sn, inst) if x)})" if sn or inst else "")
    return file_label


def _pseudonymise_slices(sl: pd.DataFrame, key, file_label: dict[str, str], series_key, patient: str,
                         t0: float) -> list[dict]:
    """The lookup rows of a non-empty slice index (UIDs, then files), pseudonymising it in place: time
    offsets, the file and name keys, UID pseudonyms and file labels."""
    look: list[dict] = []
    _time_offsets(sl, t0)
    sl["file_key"] = [key.key("file", f) for f in sl["file"].astype(str)]
    sl["name_key"] = [key.key("name", Path(f).stem) for f in sl["file"].astype(str)]
    for c in _UID_COLUMNS:
        originals = sl[c].astype(str)
        sl[c] = [series_key(v) if c == "series_uid" else key.uid(v) for v in originals]
        look += [{"patient_id": patient, "kind": c, "pseudonym": pz, "original": o}
                 for o, pz in dict(zip(originals, sl[c])).items() if o not in ("", "nan")]
    look += [{"patient_id": patient, "kind": "file", "pseudonym": lab, "original": f} for f, lab in file_label.items()]
    sl["file"] = [file_label[str(f)] for f in sl["file"]]
    return look


def _pseudonymise_free_text(tables: tuple[pd.DataFrame, ...], words: frozenset[str],
                            key) -> tuple[dict[str, str], set[str]]:
    """The safe text of every SeriesDescription (original -> kept imaging words) and the contrast agents
    named, replacing them in ``tables`` in place (an agent becomes ``given``)."""
    texts = {str(v) for t in tables if "series_description" in t for v in t["series_description"]
             if isinstance(v, str) and v}
    said = {v: safe_text(v, words, key) for v in texts}
    agents = {str(v) for t in tables if "contrast_agent" in t for v in t["contrast_agent"]
              if isinstance(v, str) and v.strip()}
    for t in tables:
        if "series_description" in t:
            t["series_description"] = [said.get(v, v) if isinstance(v, str) else v for v in t["series_description"]]
        if "contrast_agent" in t:
            t["contrast_agent"] = ["given" if isinstance(v, str) and v.strip() else "" for v in t["contrast_agent"]]
    return said, agents


def _pseudonymise_series_tables(out: dict[str, pd.DataFrame], series_key, t0: float, repl: dict[str, str]) -> None:
    """The series and phase tables in ``out``, replaced: series UID pseudonyms, the series' time offsets, and
    every other value scrubbed of ``repl``."""
    for name in ("series", "phases"):
        t = out[name]
        if "series_uid" in t:
            t["series_uid"] = [series_key(v) for v in t["series_uid"]]
        if name == "series":
            _time_offsets(t, t0)
        out[name] = scrub_frame(t, repl, skip=("series_uid",))


def pseudonymise_index(res: dict[str, pd.DataFrame], key, labels: dict[str, str], patient: str,
                       images: dict[str, str] | None = None,
                       words: frozenset[str] | None = None) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The index tables as results/ may hold them (``privacy.mode: pseudonymise``) and the private lookup
    rows (pseudonym -> original).

    UIDs become keyed ``2.25.`` pseudonyms (``key.uid``); a file becomes ``file 12 (series 3, instance 7)``
    (its index in the patient's folder, and the SeriesNumber/InstanceNumber a viewer shows), with keyed
    hashes of its path (``file_key``, how convert finds it again) and of its name (``name_key``, how labelme
    files that name it still link); acquisition and bolus times become seconds after the patient's first
    acquisition (the bolus delay is unchanged); every message naming a file names its label. Free text
    (SeriesDescription) keeps only imaging words (``privacy.safe_text`` with ``words``), wherever it is
    quoted; ContrastBolusAgent becomes ``given`` (what the phase assignment used: whether one was)."""
    images = images or {}
    out = {k: v.copy() for k, v in res.items()}
    sl = out["slices"]
    image_series = {f"file:{Path(p).name}": f"file:the {ph} image" for ph, p in images.items()}
    t0 = pd.to_numeric(sl["acq_s"], errors="coerce").min()  # the patient's first acquisition
    series_key = partial(_series_pseudonym, key=key, image_series=image_series)
    file_label = _slice_file_labels(sl, labels)
    look = _pseudonymise_slices(sl, key, file_label, series_key, patient, t0) if len(sl) else []
    look += [{"patient_id": patient, "kind": "image", "pseudonym": f"the {ph} image", "original": str(p)}
             for ph, p in images.items()]
    words = words if words is not None else text_words(None)
    said, agents = _pseudonymise_free_text((sl, out["series"]), words, key)
    look += [{"patient_id": patient, "kind": "series_description", "pseudonym": w, "original": v}
             for v, w in sorted(said.items()) if v != w]
    # the phase evidence quotes the agent ("contrast agent 'Ioversol 320'"): what it used is that there was one
    repl = {**labels, **file_label, **{v: w for v, w in said.items() if v != w},
            **{f"contrast agent {a!r}": "contrast agent given" for a in agents}}
    _pseudonymise_series_tables(out, series_key, t0, repl)
    out["exclusions"] = scrub_frame(out["exclusions"], repl)
    out["slices"] = scrub_frame(sl, repl, skip=("file", "file_key", "name_key") + _UID_COLUMNS)
    return out, pd.DataFrame(look, columns=_LOOKUP_COLUMNS).drop_duplicates()


def _images_arg(items: list[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        ph, _, path = it.partition("=")
        out[ph] = path
    return out


def _add_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", required=True)
    p.add_argument("--dicom-dir", default=None)
    p.add_argument("--images", nargs="*", default=[], help="phase=path of per-phase NIfTI/NRRD volumes")
    p.add_argument("--secret", default=None, help="the study's privacy key file (privacy.mode: pseudonymise)")


def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ingest", required=True, help="JSON of the config's ingest section")
    p.add_argument("--phases", required=True, help="comma-separated phase codes")
    p.add_argument("--private", default=None, help="where the pseudonym lookup rows go (outside results/)")


def _sources(a: argparse.Namespace) -> tuple[dict[str, str], Keyer, dict[str, str] | None]:
    """A patient's image files, the privacy key, and (pseudonymising) the labels of its files: what both stages
    need, read once by the one-job command."""
    images = _images_arg(a.images)
    key = Keyer.from_file(a.secret)
    return images, key, file_labels(a.dicom_dir or None, images) if key.active else None


def run_index(a: argparse.Namespace, outdir: str | Path, sources: tuple | None = None) -> None:
    """The index stage from parsed arguments: the four index tables (and the private lookup rows) in ``outdir``."""
    cfg = json.loads(a.ingest)
    mapping = None
    if cfg.get("phase_map"):
        mapping = pd.read_csv(cfg["phase_map"], sep="\t", dtype=str, keep_default_na=False)
    images, key, labels = sources or _sources(a)
    res = run_scrubbed(lambda: index_patient(a.dicom_dir or None, a.patient, cfg, a.phases.split(","),
                                             mapping, images, key), labels)
    out = Path(outdir)
    res["slices"]["file"] = res["slices"]["file"].astype(str)
    if key.active:
        res, private = pseudonymise_index(res, key, labels, a.patient, images, text_words(cfg))
        write_tsv(a.private, private)
    for name in ("slices", "series", "phases", "exclusions"):
        write_tsv(out / f"{name}.tsv", res[name])
    ok = (res["phases"]["status"] == "ok").sum()
    print(f"{a.patient}: {len(res['slices'])} files, {len(res['series'])} series, {ok}/{len(res['phases'])} phases usable")
    for e in res["exclusions"].to_dict("records"):
        print(f"EXCLUDED patient {e['patient_id']}, phase {e['phase'] or '-'}, file {e['file']}: {e['reason']}")


def run_convert(a: argparse.Namespace, index_dir: str | Path, outdir: str | Path, sources: tuple | None = None) -> None:
    """The convert stage from parsed arguments: the usable phases' volumes in ``outdir``."""
    images, key, labels = sources or _sources(a)
    ph = run_scrubbed(lambda: convert_patient(a.dicom_dir or None, a.patient, index_dir, outdir, images, key=key),
                      labels)
    print(f"{a.patient}: wrote {(ph['status'] == 'ok').sum()} volumes")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="DICOM ingest stages for one patient.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a0 = sub.add_parser("patient", help="both stages in one process (the pipeline's job): index, then convert")
    _add_sources(a0)
    _add_index(a0)
    a0.add_argument("--index-dir", required=True, help="where the index tables go")
    a0.add_argument("--volumes", required=True, help="where the volumes go")
    a1 = sub.add_parser("index", help="header index, phase assignment and geometry checks")
    _add_sources(a1)
    _add_index(a1)
    a1.add_argument("--outdir", required=True)
    a2 = sub.add_parser("convert", help="HU volumes of the usable phases as NIfTI")
    _add_sources(a2)
    a2.add_argument("--index-dir", required=True)
    a2.add_argument("--outdir", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "patient":
        sources = _sources(a)
        run_index(a, a.index_dir, sources)
        run_convert(a, a.index_dir, a.volumes, sources)
    elif a.cmd == "index":
        run_index(a, a.outdir)
    else:
        run_convert(a, a.index_dir, a.outdir)


if __name__ == "__main__":
    main()
