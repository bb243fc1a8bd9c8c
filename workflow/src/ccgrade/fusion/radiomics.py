"""Radiomics features per patient with pyradiomics (Sun et al.: arterial-phase radiomics).

The extraction settings are a pyradiomics parameter YAML (``radiomics.params``, a rule input: bin
width, resampling, image types such as LoG and wavelet, feature classes). The tumour mask comes from the
configured ROI setting's annotation (NIfTI/NRRD mask, RTSTRUCT or polygons) on the phase's ingested HU
volume; an image and mask whose geometry differs is an error naming the patient. A patient without
images (e.g. KiTS23 masks alone) gets shape features only, computed from the mask file: shape needs no
intensities. Every row records the mode (``full`` or ``shape``) and the pyradiomics version.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ccgrade.errors import AnnotationError
from ccgrade.outputs import read_table

META_COLUMNS = ["patient_id", "phase", "mode", "status", "reason", "pyradiomics_version"]


def _extractor(params: Path, shape_only: bool):
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ext = featureextractor.RadiomicsFeatureExtractor(str(params))
    # the diagnostics (image hashes, whole-volume statistics) are dropped from the table anyway; on a
    # 512 x 512 x 1000 mask they cost more than the features themselves
    ext.settings["additionalInfo"] = False
    if shape_only:  # intensities are not available (or not wanted): shape from the mask alone
        ext.disableAllFeatures()
        ext.enableFeatureClassByName("shape")
        ext.disableAllImageTypes()
        ext.enableImageTypeByName("Original")
    return ext


def check_geometry(image: sitk.Image, mask: sitk.Image, patient: str, tol: float = 1e-3) -> None:
    """Image and mask must share size, spacing, origin and direction (tolerance ``tol`` mm / cosine)."""
    problems = []
    if image.GetSize() != mask.GetSize():
        problems.append(f"size {image.GetSize()} vs mask {mask.GetSize()}")
    for name, a, b in (("spacing", image.GetSpacing(), mask.GetSpacing()), ("origin", image.GetOrigin(), mask.GetOrigin()),
                       ("direction", image.GetDirection(), mask.GetDirection())):
        if not np.allclose(a, b, atol=tol):
            problems.append(f"{name} {tuple(round(v, 4) for v in a)} vs mask {tuple(round(v, 4) for v in b)}")
    if problems:
        raise AnnotationError("image and mask geometry differ: " + "; ".join(problems), patient=patient)


def extract(mask: sitk.Image, params: Path, *, patient: str, image: sitk.Image | None = None) -> dict[str, float]:
    """pyradiomics features of the mask's label-1 region (``image`` None: shape only)."""
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if sitk.GetArrayViewFromImage(mask).sum() == 0:
        raise AnnotationError("the tumour mask is empty", patient=patient)
    if image is not None:
        check_geometry(image, mask, patient)
    ext = _extractor(params, shape_only=image is None)
    try:
        if image is None:
            img, mask = _shape_inputs(mask, ext)
            # the mask is already on pyradiomics' own resampled grid (or resampling is off)
            ext.settings["resampledPixelSpacing"] = None
        else:
            img = image
        res = ext.execute(img, mask, label=1)
    except ValueError as e:  # pyradiomics' own checks (e.g. a mask too small after resampling)
        raise AnnotationError(f"pyradiomics: {e}", patient=patient) from None
    return {k: float(v) for k, v in res.items() if not k.startswith("diagnostics_")}


def _shape_inputs(mask: sitk.Image, ext) -> tuple[sitk.Image, sitk.Image]:
    """Image and mask for shape features alone, cut down to the tumour before pyradiomics sees them.

    Shape features read the mask only; the image is a stand-in. pyradiomics would first check, hash,
    cast and (B-spline) prefilter the whole volume, which for a real KiTS mask (up to 512 x 512 x 1000)
    takes 10-45 s. Here the resampling grid is pyradiomics' own (``imageoperations.resampleImage`` on the
    full mask's geometry: origin, bounding box and padding exactly as in a plain extraction), filled by
    nearest-neighbour sampling as pyradiomics samples masks, so the features are unchanged (tested).
    """
    from radiomics import imageoperations

    settings = ext.settings
    spacing = settings.get("resampledPixelSpacing")
    if spacing is not None and settings.get("interpolator") is not None:
        mask, _ = imageoperations.resampleImage(mask, mask, **{**settings, "interpolator": sitk.sitkNearestNeighbor,
                                                             "label": 1})
    return sitk.Cast(mask, sitk.sitkFloat32), mask


def version() -> str:
    import radiomics

    return str(radiomics.__version__)


def patient_features(patient: str, phase: str, params: Path, *, mask_file: str | None = None,
                     volumes: Path | None = None, roi: dict | None = None, sources: dict | None = None,
                     mask_label: int = 1, rtstruct_roi: str | None = None, rtstruct_link: str = "auto",
                     shape_only: bool = False, key=None) -> pd.DataFrame:
    """One row: the patient's features, or status 'excluded' with the reason (nothing is silently dropped).

    With ``volumes`` (an ingested patient folder) the mask is the ROI setting's annotation on that phase's
    volume; without, ``mask_file`` alone gives the shape features.
    """
    from ccgrade.preprocess import crops

    base = {"patient_id": patient, "phase": phase, "pyradiomics_version": version()}
    try:
        if volumes is not None:
            status = pd.read_csv(volumes / "phases.tsv", sep="\t", keep_default_na=False).set_index("phase")
            if phase not in status.index or status.loc[phase, "status"] != "ok":
                raise AnnotationError(f"phase {phase} is not usable (see the ingest exclusions)", patient=patient)
            from ccgrade.config.cohort import pick_source, roi_sources

            roi = roi or {"kind": "tumor"}
            _, apath = pick_source(roi, sources or {})
            if not apath or not Path(apath).exists():
                raise AnnotationError(f"no {' or '.join(roi_sources(roi))} annotation for phase {phase}",
                                      patient=patient)
            image = sitk.ReadImage(str(volumes / f"{phase}.nii.gz"), sitk.sitkFloat32)
            slices = read_table(volumes / f"{phase}.slices.tsv")
            kw = {"rtstruct_roi": rtstruct_roi} if rtstruct_roi else {}
            _, arr, _, _ = crops.roi_boxes("tumor", roi, src=sources or {}, phase=phase,
                                           slices=slices, img=image, mask_label=mask_label, patient=patient,
                                           series_uid=str(status.loc[phase, "series_uid"]), rtstruct_link=rtstruct_link,
                                           key=key, **kw)
            mask = sitk.GetImageFromArray(arr.astype(np.uint8))
            mask.CopyInformation(image)
            feats = extract(mask, params, patient=patient, image=None if shape_only else image)
            mode = "shape" if shape_only else "full"
        elif mask_file:
            m = sitk.ReadImage(str(mask_file))
            feats = extract(sitk.Cast(m == mask_label, sitk.sitkUInt8), params, patient=patient)
            mode = "shape"
        else:
            raise AnnotationError("neither images nor a mask file", patient=patient)
    except (AnnotationError, FileNotFoundError) as e:
        return pd.DataFrame([{**base, "mode": "", "status": "excluded", "reason": str(e)}], columns=META_COLUMNS)
    return pd.DataFrame([{**base, "mode": mode, "status": "ok", "reason": "", **feats}])


def feature_table(rows: list[pd.DataFrame]) -> pd.DataFrame:
    """Patients x features (meta columns first); feature columns are those of the 'ok' rows."""
    t = pd.concat(rows, ignore_index=True)
    feats = sorted(c for c in t.columns if c not in META_COLUMNS)
    return t[META_COLUMNS + feats].sort_values("patient_id").reset_index(drop=True)


def feature_columns(t: pd.DataFrame) -> list[str]:
    return [c for c in t.columns if c not in META_COLUMNS]


def main(argv: list[str] | None = None) -> None:
    from ccgrade.outputs import write_tsv

    ap = argparse.ArgumentParser(description="pyradiomics features per patient, and their table.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("patient", help="one patient's features")
    p.add_argument("--patient", required=True)
    p.add_argument("--phase", required=True)
    p.add_argument("--params", required=True, help="pyradiomics parameter YAML")
    p.add_argument("--volumes", help="ingested volume folder (full features)")
    p.add_argument("--mask", help="mask file (no images: shape features)")
    p.add_argument("--roi", default="{}", help="JSON ROI setting whose annotation is the tumour")
    p.add_argument("--sources", default="{}", help="JSON {format: path} of the phase's annotations")
    p.add_argument("--mask-label", type=int, default=1)
    p.add_argument("--rtstruct-roi")
    p.add_argument("--rtstruct-link", default="auto", choices=["auto", "uid", "position"])
    p.add_argument("--shape-only", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--secret", default=None, help="the study's privacy key file (privacy.mode: pseudonymise)")
    t = sub.add_parser("table", help="gather the patients' rows")
    t.add_argument("--rows", nargs="+", required=True)
    t.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "table":
        tab = feature_table([read_table(f) for f in a.rows])
        write_tsv(a.out, tab)
        print(f"{(tab['status'] == 'ok').sum()} of {len(tab)} patients, {len(feature_columns(tab))} features")
        return
    from ccgrade.privacy.pseudonyms import for_job, run_scrubbed, scrub_frame

    sources = json.loads(a.sources)
    key, labels = for_job(a.secret, {a.phase: {**sources, **({"mask": a.mask} if a.mask else {})}})
    row = run_scrubbed(lambda: patient_features(
        a.patient, a.phase, Path(a.params), mask_file=a.mask, volumes=Path(a.volumes) if a.volumes else None,
        roi=json.loads(a.roi), sources=sources, mask_label=a.mask_label, rtstruct_roi=a.rtstruct_roi,
        rtstruct_link=a.rtstruct_link, shape_only=a.shape_only, key=key), labels)
    if labels:
        row = scrub_frame(row, labels)
    write_tsv(a.out, row)
    print(f"{a.patient}: {row['status'].iloc[0]}, {len(row.columns) - len(META_COLUMNS)} features")


if __name__ == "__main__":
    main()
