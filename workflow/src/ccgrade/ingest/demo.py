"""Synthetic but physically plausible multiphase renal CT cohort, written as real DICOM CT series.

Every number comes from ``numpy.random.default_rng([seed, patient_index])``, so one patient can be
regenerated alone and a cohort is identical on every machine. Attenuation values follow
``shared/DOMAIN.md`` (textbook HU per phase); grade acts through a latent aggressiveness score that
shifts size, necrosis, heterogeneity, enhancement and margin sharpness, with large overlap.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# SimpleITK, pydicom and scipy are imported inside the functions that write images: the Snakefile
# imports this module at parse time for draw_cohort(), and parse time must stay light.
from ccgrade.outputs import atomic_path, write_json, write_tsv

PHASES = ("up", "cmp", "np", "ep")
#: HU per tissue and phase (unenhanced, corticomedullary, nephrographic, excretory); DOMAIN.md.
TISSUE_HU = {
    "air": (-1000, -1000, -1000, -1000), "fat": (-100, -100, -100, -100),
    "soft": (45, 55, 60, 60), "bone": (700, 700, 700, 700), "csf": (10, 10, 10, 10),
    "aorta": (40, 300, 165, 110), "ivc": (40, 110, 165, 120), "liver": (55, 80, 110, 90),
    "spleen": (48, 120, 120, 100), "cortex": (35, 175, 160, 115), "medulla": (35, 75, 160, 115),
    "urine": (5, 5, 8, 800),
}
TISSUES = list(TISSUE_HU)
SERIES_STYLES = (
    {"up": "Abdomen Plain 5.0", "cmp": "Arterial Phase 5.0", "np": "Venous Phase 5.0", "ep": "Delayed 5.0"},
    {"up": "NC 5mm", "cmp": "CMP 5mm", "np": "NP 5mm", "ep": "EP 5mm"},
    {"up": "Series 2", "cmp": "Series 3", "np": "Series 4", "ep": "Series 5"},  # uninformative
    # another vendor's protocol names (the demo's external centre): whole words ingest's keywords know
    {"up": "Pre Contrast 3.0 B30f", "cmp": "Arterial 3.0 B30f", "np": "Portal Venous 3.0 B30f",
     "ep": "Delayed 3.0 B30f"},
)
#: demo ``series_style``: mixed (a centre-dependent mix of the first three) or one style by name
STYLE_NAMES = {"mixed": None, "named": 0, "abbreviated": 1, "numbered": 2, "vendor": 3}
#: clinical distributions by grade group, after Cui et al. Table 2 (low n=124, high n=34).
CLINICAL = {
    "low": dict(male=0.653, age=(57.5, 9.0), left=0.49, bmi=(25.8, 3.5), htn=0.58, dm=0.23, size=(4.3, 2.0)),
    "high": dict(male=0.735, age=(58.9, 10.4), left=0.62, bmi=(25.4, 3.6), htn=0.68, dm=0.26, size=(7.1, 3.0)),
}


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def patient_id(i: int, prefix: str = "DEMO") -> str:
    """Cohort ID of the i-th demo patient (0-based); the external centre's patients have their own prefix."""
    return f"{prefix}{i + 1:03d}"


#: the ID prefix of the demo's external centre (its patients are numbered apart from the cohort's)
EXTERNAL_PREFIX = "EXT"


def external_settings(demo: dict, shift: dict, centre: str) -> dict:
    """The demo's external centre (config ``external.demo``): the cohort's image settings with the centre's
    shift (noise, slice thickness and count, grade mix, series names, its own seed), one centre, its own IDs."""
    return {**demo, **shift, "centres": {centre: 1.0}, "id_prefix": EXTERNAL_PREFIX}


def draw_patient(seed: int, i: int, demo: dict, high_from: int = 3) -> dict:
    """Draw one patient's clinical record and phantom parameters (deterministic in seed and i)."""
    rng = np.random.default_rng([seed, i])
    high = bool(rng.random() < demo["high_grade_fraction"])
    grade = int(rng.choice([3, 4], p=[0.7, 0.3]) if high else rng.choice([1, 2], p=[0.2, 0.8]))
    c = CLINICAL["high" if high else "low"]
    centres = list(demo["centres"])
    w = np.array([demo["centres"][k] for k in centres], float)
    centre = str(rng.choice(centres, p=w / w.sum()))
    zcover_cm = (demo["n_slices"] * demo["slice_thickness_mm"] - 25.0) / 10.0
    mean, sd = c["size"]
    sig2 = np.log(1 + (sd / mean) ** 2)
    size = float(np.exp(rng.normal(np.log(mean) - sig2 / 2, np.sqrt(sig2))))
    size = float(np.clip(size, 1.5, min(11.0, zcover_cm, 0.22 * demo["fov_mm"] / 10)))
    aggr = (1.0 if high else 0.0) + rng.normal(0, 0.7)
    s = _sigmoid(2.0 * (aggr - 0.5))
    rec = {
        "patient_id": patient_id(i, demo.get("id_prefix", "DEMO")), "grade": grade,
        "grade_group": "high" if grade >= high_from else "low", "centre": centre,
        "age": int(np.clip(round(rng.normal(*c["age"])), 25, 88)),
        "sex": "M" if rng.random() < c["male"] else "F",
        "side": "left" if rng.random() < c["left"] else "right",
        "bmi": round(float(np.clip(rng.normal(*c["bmi"]), 16, 45)), 1),
        "hypertension": "yes" if rng.random() < c["htn"] else "no",
        "diabetes": "yes" if rng.random() < c["dm"] else "no",
        "tumor_size_cm": round(size, 1),
    }
    phantom = {
        "aggressiveness": aggr,
        "necrosis": 0.02 + 0.40 * s,
        "heterogeneity_hu": 6 + 20 * s,
        "enhancement": (35 + rng.normal(0, 3), 165 - 40 * s + rng.normal(0, 12),
                        112 - 14 * s + rng.normal(0, 8), 75 - 8 * s + rng.normal(0, 6)),
        "margin_mm": 0.4 + 2.6 * s,
        "lobulation": 0.04 + 0.12 * s,
        "lobe_phases": rng.uniform(0, 2 * np.pi, 6).tolist(),
        "lobe_dirs": rng.normal(size=(6, 3)).tolist(),
        "tumor_dir": rng.normal(size=3).tolist(),
        "kidney_z": rng.uniform(-8, 8), "kidney_rot": rng.uniform(-0.3, 0.3),
        "style": int(rng.choice(3, p=[0.45, 0.45, 0.10]) if centre == centres[0] else rng.choice(3, p=[0.2, 0.7, 0.1])),
        "inj_s": float(rng.uniform(9 * 3600, 16 * 3600)),
        "delays": (-120.0, rng.uniform(28, 38), rng.uniform(55, 100), rng.uniform(180, 420)),
        "noise_seed": int(rng.integers(2**31)),
        "phi": {"name": f"Zz{rng.integers(10**6):06d}^Synthetic", "mrn": f"MRN{rng.integers(10**7):07d}",
                "birth": f"19{rng.integers(30, 90)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}",
                "accession": f"ACC{rng.integers(10**8):08d}", "institution": f"Synthetic General Hospital {centre}",
                "physician": f"Yy{rng.integers(10**5):05d}^Referrer"},
    }
    fixed = STYLE_NAMES[demo.get("series_style", "mixed")]
    if fixed is not None:  # drawn above all the same, so that the other draws do not move
        phantom["style"] = fixed
    return {"clinical": rec, "phantom": phantom}


def draw_cohort(demo: dict, high_from: int = 3, root: str | Path = "resources/demo_cohort", start: int = 0
                ) -> pd.DataFrame:
    """The demo cohort sheet (clinical columns plus image and annotation folders); cheap, no images. Patients
    ``start`` .. ``n_patients - 1`` (the demo's new patients to grade, ``predict``, follow the cohort's)."""
    rows = []
    for i in range(start, demo["n_patients"]):
        rec = dict(draw_patient(demo["seed"], i, demo, high_from)["clinical"])
        rec["dicom_dir"] = str(Path(root) / "dicom" / rec["patient_id"])
        rec["annotation_dir"] = str(Path(root) / "annotations" / rec["patient_id"])
        rows.append(rec)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Grid:
    """Axial image grid in LPS millimetres: voxel (k, j, i) sits at (x0 + i*dx, y0 + j*dx, z0 + k*dz)."""
    n: int
    nz: int
    dx: float
    dz: float

    @property
    def x0(self) -> float:
        return -(self.n - 1) / 2 * self.dx

    @property
    def z0(self) -> float:
        return -(self.nz - 1) / 2 * self.dz

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """z, y, x coordinate vectors."""
        xy = self.x0 + np.arange(self.n) * self.dx
        return self.z0 + np.arange(self.nz) * self.dz, xy, xy.copy()


def _ellipse(X, Y, cx, cy, ax, ay, rot=0.0):
    c, s = np.cos(rot), np.sin(rot)
    u, v = (X - cx) * c + (Y - cy) * s, -(X - cx) * s + (Y - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2


def phantom_volumes(params: dict, clinical: dict, grid: Grid, noise_hu: float) -> tuple[dict, np.ndarray]:
    """Build the four phase HU volumes (z, y, x) and the binary tumour mask of one patient."""
    from scipy import ndimage

    tissue, centres, kidney_axes = _anatomy(params, grid)
    sl, inside, necrotic, weight, tex = _tumour(params, clinical, grid, centres, kidney_axes)
    mask = np.zeros(tissue.shape, np.uint8)
    mask[sl] = inside
    vols = {}
    base_noise = np.random.default_rng(params["noise_seed"] + 1)
    for p, phase in enumerate(PHASES):
        lut = np.array([TISSUE_HU[t][p] for t in TISSUES], np.float32)
        hu = lut[tissue]
        tum = params["enhancement"][p] + params["heterogeneity_hu"] * (0.4 + 0.6 * (p > 0)) * tex
        tum = np.where(necrotic, 18.0 + 4 * tex, tum)
        sub = hu[sl]
        hu[sl] = (1 - weight) * sub + weight * tum
        hu = ndimage.gaussian_filter(hu, (0, 0.6, 0.6))
        if noise_hu > 0:
            nz = ndimage.gaussian_filter(base_noise.standard_normal(hu.shape).astype(np.float32), (0, 0.7, 0.7))
            hu += nz * (noise_hu / (nz.std() + 1e-9))
        vols[phase] = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return vols, mask


def _anatomy(params: dict, grid: Grid) -> tuple[np.ndarray, dict[int, np.ndarray], np.ndarray]:
    """The tissue label volume of the abdomen (body, organs, retroperitoneum, spine, vessels, kidneys), the
    kidneys' centres by side (-1 right, +1 left) and their semi-axes."""
    z, y, x = grid.axes()
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
    tissue = np.zeros((grid.nz, grid.n, grid.n), np.uint8)  # air
    T = {t: k for k, t in enumerate(TISSUES)}

    def column(cx, cy, ax, ay, label):  # an elliptic cylinder through every slice
        tissue[np.broadcast_to(_ellipse(X, Y, cx, cy, ax, ay) <= 1, tissue.shape)] = T[label]

    column(0, 0, 150, 112, "fat")
    column(0, -5, 133, 96, "soft")
    kz = params["kidney_z"]
    for cx, cy, ax, ay, zlo, name in ((-70, -20, 68, 72, kz - 15, "liver"), (85, 15, 30, 42, kz + 20, "spleen")):
        tissue[(_ellipse(X, Y, cx, cy, ax, ay) <= 1) & (Z > zlo)] = T[name]
    # retroperitoneal fat around the kidneys, then paraspinal muscles, spine and great vessels
    for side in (-1, 1):
        tissue[(_ellipse(X, Y, side * 72, 38, 48, 40) + ((Z - kz) / 75) ** 2) <= 1] = T["fat"]
        column(side * 38, 78, 22, 16, "soft")
    for args in ((0, 50, 19, 17, "bone"), (0, 80, 12, 10, "bone"), (0, 68, 7, 6, "csf"), (12, 18, 11, 11, "aorta"),
                 (-24, 14, 13, 10, "ivc")):
        column(*args)
    kidney_axes = np.array([27.0, 22.0, 52.0])
    centres = {}
    for side in (-1, 1):  # -1: right kidney (patient right is -x in LPS), +1: left kidney
        cx, cy = side * 72.0, 38.0
        rot = side * (0.45 + params["kidney_rot"])
        rho = np.sqrt(_ellipse(X, Y, cx, cy, kidney_axes[0], kidney_axes[1], rot) + ((Z - kz) / kidney_axes[2]) ** 2)
        tissue[rho <= 1] = T["cortex"]
        tissue[rho <= 0.75] = T["medulla"]
        sinus = np.sqrt(_ellipse(X, Y, cx - side * 12, cy - 4, 8, 6, rot) + ((Z - kz) / 22) ** 2) <= 1
        tissue[sinus] = T["urine"]
        centres[side] = np.array([cx, cy, kz])
    return tissue, centres, kidney_axes


def _tumour(params: dict, clinical: dict, grid: Grid, centres: dict, kidney_axes: np.ndarray):
    """The tumour, a lobulated sphere on the outer cortex of the affected kidney: the box it lies in (slices
    of the volume), and within it the tumour, its necrotic part, the blend weight of its soft margin and its
    texture field."""
    from scipy import ndimage

    z, y, x = grid.axes()
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
    side = 1 if clinical["side"] == "left" else -1
    r0 = clinical["tumor_size_cm"] * 10 / 2
    d = np.asarray(params["tumor_dir"], float)
    d[0] = side * abs(d[0]) + side * 0.8  # lateral bias: exophytic
    d /= np.linalg.norm(d)
    c = centres[side] + d * kidney_axes * 0.65
    zlim = grid.z0 + 12 + r0, grid.z0 + (grid.nz - 1) * grid.dz - 12 - r0
    c[2] = float(np.clip(c[2], min(zlim), max(zlim)))
    pad = r0 * (1 + params["lobulation"]) + 3 * params["margin_mm"] + 3
    ks, js, is_ = (np.nonzero(np.abs(v - cv) <= pad)[0] for v, cv in ((z, c[2]), (y, c[1]), (x, c[0])))
    sl = (slice(ks[0], ks[-1] + 1), slice(js[0], js[-1] + 1), slice(is_[0], is_[-1] + 1))
    dz_, dy_, dx_ = Z[sl[0]] - c[2], Y[:, sl[1]] - c[1], X[:, :, sl[2]] - c[0]
    dist = np.sqrt(dx_**2 + dy_**2 + dz_**2) + 1e-6
    lobes = np.zeros_like(dist)
    for ph, v in zip(params["lobe_phases"], params["lobe_dirs"]):
        v = np.asarray(v) / np.linalg.norm(v)
        lobes += np.cos(3.0 * (dx_ * v[0] + dy_ * v[1] + dz_ * v[2]) / dist + ph)
    rho = dist / (r0 * (1 + params["lobulation"] * lobes / 2.5))
    rng = np.random.default_rng(params["noise_seed"])
    sig = (max(0.8, 3.0 / grid.dz), 3.0 / grid.dx, 3.0 / grid.dx)
    tex = ndimage.gaussian_filter(rng.standard_normal(rho.shape), sig)
    tex /= tex.std() + 1e-9
    nec_field = ndimage.gaussian_filter(rng.standard_normal(rho.shape), tuple(2 * s for s in sig))
    nec_field /= nec_field.std() + 1e-9
    inside = rho <= 1
    score = 0.7 * nec_field + 2.0 * rho
    necrotic = np.zeros_like(inside)
    if inside.sum() > 20 and params["necrosis"] > 0.03:
        thr = np.quantile(score[inside], params["necrosis"])
        necrotic = inside & (score <= thr) & (rho < 0.85)
    weight = np.clip((1 - rho) * r0 / max(params["margin_mm"], 0.3) + 0.5, 0, 1)
    return sl, inside, necrotic, weight, tex


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _tm(seconds: float) -> str:
    seconds = seconds % 86400
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def write_ct_series(vol: np.ndarray, grid: Grid, folder: Path, *, seed: int, clinical: dict, params: dict,
                    phase: str, series_number: int, study_date: str) -> list[dict]:
    """Write one axial CT series (CT Image Storage, one file per slice); return per-slice records."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    pid, phi = clinical["patient_id"], params["phi"]
    study_uid, for_uid = _uid(seed, pid, "study"), _uid(seed, pid, "frame")
    series_uid = _uid(seed, pid, phase, "series")
    acq = params["inj_s"] + params["delays"][PHASES.index(phase)]
    desc = SERIES_STYLES[params["style"]][phase]
    records = []
    for k in range(grid.nz):
        inst = grid.nz - k  # head-first numbering: instance 1 is the most cranial slice
        sop_uid = _uid(seed, pid, phase, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = _uid("ccgrade-demo")
        name = f"IM{inst:04d}"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "ccgrade", "synthetic phantom"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = phi["name"], phi["mrn"], phi["birth"]
        ds.PatientSex = clinical["sex"]
        ds.PatientAge = f"{clinical['age']:03d}Y"
        ds.InstitutionName, ds.AccessionNumber = phi["institution"], phi["accession"]
        ds.ReferringPhysicianName = phi["physician"]
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
        ds.StudyTime = _tm(params["inj_s"] - 300)
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = _tm(acq)
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", series_number, inst
        ds.SeriesDescription, ds.BodyPartExamined = desc, "ABDOMEN"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if phase != "up":
            ds.ContrastBolusAgent = "Ioversol 320"
            ds.ContrastBolusRoute = "IV"
            ds.ContrastBolusStartTime = _tm(params["inj_s"])
        ds.KVP, ds.PatientPosition = 120, "FFS"
        ds.SliceThickness = ds.SpacingBetweenSlices = grid.dz
        ds.ImagePositionPatient = [round(grid.x0, 4), round(grid.x0, 4), round(grid.z0 + k * grid.dz, 4)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = round(grid.z0 + k * grid.dz, 4)
        ds.PixelSpacing = [round(grid.dx, 6), round(grid.dx, 6)]
        ds.Rows = ds.Columns = grid.n
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (vol[k].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        with atomic_path(folder / name, suffix="") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        records.append({"k": k, "file": name, "sop_uid": sop_uid, "series_uid": series_uid, "study_uid": study_uid})
    return records


def _polygon_from_mask(sl: np.ndarray, n_rays: int = 36) -> list[list[float]]:
    """Star-shaped outline of a 2D mask by ray casting from its centroid (pixel x, y coordinates)."""
    jj, ii = np.nonzero(sl)
    cy, cx = jj.mean(), ii.mean()
    pts = []
    for t in np.linspace(0, 2 * np.pi, n_rays, endpoint=False):
        dy, dx = np.sin(t), np.cos(t)
        r = 0.0
        for step in np.arange(0, max(sl.shape), 0.5):
            yy, xx = int(round(cy + step * dy)), int(round(cx + step * dx))
            if not (0 <= yy < sl.shape[0] and 0 <= xx < sl.shape[1]) or not sl[yy, xx]:
                break
            r = step
        pts.append([round(float(cx + (r + 0.5) * dx + 0.5), 2), round(float(cy + (r + 0.5) * dy + 0.5), 2)])
    return pts


def write_annotations(mask: np.ndarray, grid: Grid, slices: dict, outdir: Path, spacing_mm: float,
                      min_pixels: int = 10) -> None:
    """Write the tumour annotations of every phase in the three formats the studies used."""
    import SimpleITK as sitk

    rng_margin = 1.5  # Cui: rectangle expanded 1-2 mm beyond the tumour's extent
    for phase, recs in slices.items():
        pdir = outdir / phase
        lab = pdir / "labelme"
        lab.mkdir(parents=True, exist_ok=True)
        img = sitk.GetImageFromArray(mask)
        img.SetSpacing((grid.dx, grid.dx, grid.dz))
        img.SetOrigin((grid.x0, grid.x0, grid.z0))
        with atomic_path(pdir / "mask.nii.gz") as tmp:
            sitk.WriteImage(img, str(tmp), useCompression=True)
        polys = []
        for rec in recs:
            sl = mask[rec["k"]]
            if sl.sum() < min_pixels:
                continue
            jj, ii = np.nonzero(sl)
            m = rng_margin / spacing_mm
            x1, x2 = max(ii.min() - m, 0), min(ii.max() + 1 + m, sl.shape[1])
            y1, y2 = max(jj.min() - m, 0), min(jj.max() + 1 + m, sl.shape[0])
            doc = {"version": "5.4.1", "flags": {}, "imagePath": f"{rec['file']}.bmp", "imageData": None,
                   "imageHeight": int(sl.shape[0]), "imageWidth": int(sl.shape[1]),
                   "shapes": [{"label": "tumor", "shape_type": "rectangle", "group_id": None, "description": "",
                               "flags": {}, "points": [[round(float(x1), 2), round(float(y1), 2)],
                                                       [round(float(x2), 2), round(float(y2), 2)]]}]}
            with atomic_path(lab / f"{rec['file']}.json") as tmp:
                tmp.write_text(json.dumps(doc, indent=1))
            polys.append({"StudyInstanceUID": rec["study_uid"], "SeriesInstanceUID": rec["series_uid"],
                          "SOPInstanceUID": rec["sop_uid"], "labelName": "Tumor", "type": "polygon",
                          "data": {"vertices": _polygon_from_mask(sl)}})
        write_json(pdir / "polygons.json", {"datasets": [{"name": "ccgrade demo", "annotations": polys}]})


def generate_patient(i: int, demo: dict, root: Path, high_from: int = 3) -> dict:
    """Write one demo patient's four DICOM series and annotations under ``root``; return its record."""
    draw = draw_patient(demo["seed"], i, demo, high_from)
    clin, params = draw["clinical"], draw["phantom"]
    grid = Grid(n=demo["matrix"], nz=demo["n_slices"], dx=demo["fov_mm"] / demo["matrix"],
                dz=demo["slice_thickness_mm"])
    vols, mask = phantom_volumes(params, clin, grid, demo["noise_hu"])
    pid = clin["patient_id"]
    date = (dt.date(2026, 1, 5) + dt.timedelta(days=i)).strftime("%Y%m%d")
    slices = {}
    for n, phase in enumerate(PHASES):
        folder = root / "dicom" / pid / f"S{n + 2:02d}"
        slices[phase] = write_ct_series(vols[phase], grid, folder, seed=demo["seed"], clinical=clin, params=params,
                                        phase=phase, series_number=n + 2, study_date=date)
    write_annotations(mask, grid, slices, root / "annotations" / pid, grid.dx)
    return clin


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Generate demo patients or the demo cohort sheet.")
    ap.add_argument("--demo", required=True, help="JSON of the config's demo section")
    ap.add_argument("--high-from", type=int, default=3)
    ap.add_argument("--root", required=True)
    ap.add_argument("--patient", help="generate this patient's images and annotations")
    ap.add_argument("--sheet", help="write the cohort sheet (TSV) here")
    a = ap.parse_args(argv)
    demo = json.loads(a.demo)
    root = Path(a.root)
    if a.patient:
        i = int(a.patient.removeprefix(demo.get("id_prefix", "DEMO"))) - 1
        generate_patient(i, demo, root, a.high_from)
        print(f"wrote demo patient {a.patient}")
    if a.sheet:
        sheet = draw_cohort(demo, a.high_from, root)
        sheet["dicom_dir"] = [str(Path(p).relative_to(root)) for p in sheet["dicom_dir"]]
        sheet["annotation_dir"] = [str(Path(p).relative_to(root)) for p in sheet["annotation_dir"]]
        write_tsv(a.sheet, sheet.drop(columns=["grade_group"]))
        print(f"wrote cohort sheet of {len(sheet)} patients")


if __name__ == "__main__":
    main()
