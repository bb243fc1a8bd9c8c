"""Model bundles: a trained cell packed so that it can be used without this repository's config.

``export`` writes ``results/bundles/<study>/<cell>/``: ``weights.pt`` (the best epoch's state), ``preprocess.json``
(everything the crops need: ROI setting, intensity window, the phases cropped and pooled, the stacked channels'
order, mask label, RTSTRUCT ROI pattern and linking, the network's input shape), ``metadata.json`` in the
spirit of a MONAI bundle's metadata (inputs with shape, units and orientation; the output's meaning; the
training data; the validation and test sets' evaluation with the AUC interval the study tables show,
named; versions; intended use; licence) and a short README.

``load(path)`` gives a :class:`Bundle` whose ``predict(volumes, sources)`` crops one patient's ingested HU
volumes (the folder ``python -m ccgrade.ingest convert`` writes: ``<phase>.nii.gz``, ``<phase>.slices.tsv``,
``phases.tsv``) with exactly the recorded preprocessing and returns P(high grade) per image, as the
pipeline's ``predictions.tsv`` does (reproduced to 1e-5, tested).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.outputs import read_table, write_json, write_text

BUNDLE_FORMAT = "ccgrade-bundle/1"
INTENDED_USE = ("Research use only: estimating the probability of high pathological grade (WHO/ISUP or Fuhrman "
                "III-IV vs I-II) of a clear cell renal cell carcinoma from contrast CT with a tumour annotation. Not "
                "a medical device; not validated for clinical decisions; check calibration on your own cohort first.")


def preprocess_record(config: dict, cell: dict, meta: dict) -> dict:
    """What ``Bundle.predict`` needs to crop a new patient exactly as the cell's training crops were made."""
    from ccgrade.config.matrix import crop_targets

    roi = config["rois"][cell["roi"]]
    return {"roi_name": cell["roi"], "roi": roi, "window": config["windows"][roi["window"]],
            "phases": list(config["phases"]), "targets": crop_targets(cell["phases"], list(config["phases"])),
            "stack_phases": list(config["stack"]["phases"]), "mask_label": config["mask_label"],
            "rtstruct_roi": config["rtstruct_roi"], "rtstruct_link": config["rtstruct_link"],
            "input_shape": meta.get("input_shape"), "arch": meta["hyperparameters"]["arch"],
            "freeze_stages": meta["hyperparameters"].get("freeze_stages", 0), "threshold": 0.5}


def evaluation(pred: pd.DataFrame, opt: dict | None = None) -> dict:
    """The cell's validation and test figures (patient level: mean P(high) per patient). Its AUC's 95% CI
    (``auc_ci_95``, named by ``ci_method``) is the one the study tables show (``tables.auc_cis``): Newcombe's
    score interval (``stats.auc_interval``, the default ``statistics.mode: honest``) or, in paper mode, DeLong's
    Wald interval; DeLong's Wald bounds are kept beside it in either mode (``auc_wald_ci_95``). ``opt``: the
    config's ``statistics`` settings (a bundle job is given the mode; none: the honest default)."""
    from ccgrade.evaluate.tables import auc_cis

    out = {}
    for set_name in ("val", "test"):
        t = pred[pred["set"] == set_name]
        if t.empty:
            continue
        per = t.groupby("patient_id").agg(label=("label", "first"), prob=("prob_high", "mean"))
        y, p = per["label"].to_numpy(int), per["prob"].to_numpy(float)
        call = (p >= 0.5).astype(int)
        row = {"n_patients": int(len(y)), "n_high": int(y.sum()), "n_images": int(len(t)),
               "sensitivity": float(call[y == 1].mean()) if (y == 1).any() else None,
               "specificity": float(1 - call[y == 0].mean()) if (y == 0).any() else None}
        if len(np.unique(y)) == 2:
            a = auc_cis(y, p, opt=opt, bootstrap=False)
            row.update(auc=float(a["auc"]), auc_ci_95=[float(a["auc_ci_low"]), float(a["auc_ci_high"])],
                       ci_method=f"{a['ci_method']}, patient level",
                       auc_wald_ci_95=[float(a["auc_wald_ci_low"]), float(a["auc_wald_ci_high"])],
                       wald_ci_method="DeLong (Wald), patient level")
        out[set_name] = row
    return out


def export(cell_dir: str | Path, out_dir: str | Path, *, config: dict, cell: dict, study: str) -> dict:
    """Write the cell's bundle into ``out_dir`` (weights, preprocess.json, metadata.json, README.md)."""
    from ccgrade.report import provenance

    cell_dir, out_dir = Path(cell_dir), Path(out_dir)
    meta = json.loads((cell_dir / "meta.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = meta.get("status") != "not trained"
    pred = read_table(cell_dir / "predictions.tsv")
    pre = preprocess_record(config, cell, meta) if trained else {}
    train = pred[pred["set"] == "train"].groupby("patient_id")["label"].first() if len(pred) else pd.Series(dtype=int)
    versions = provenance.versions()
    md = {"format": BUNDLE_FORMAT, "name": f"ccgrade {study} {cell['arch']} {cell['phases']} on {cell['roi']}",
          "trained": trained, "reason": meta.get("reason", ""), "study": study,
          "cell": {k: cell[k] for k in ("study", "roi", "arch", "phases", "variant", "fold", "seed")},
          "task": "binary classification: pathological grade of clear cell renal cell carcinoma",
          "inputs": {"image": {"type": "CT crops", "units": "Hounsfield units, then the recorded window",
                               "shape": meta.get("input_shape"), "axes": "channels, then (depth,) rows, columns",
                               "orientation": "slices sorted along the slice normal; rows and columns as stored",
                               "channels": pre.get("stack_phases") if cell["phases"] == "stack" else [cell["phases"]],
                               "preprocessing": "preprocess.json"}},
          "outputs": {"prob_high": {"type": "probability", "range": [0, 1],
                                    "meaning": "P(high grade: ISUP/Fuhrman III-IV) per image; a patient's is the "
                                               "mean over its images", "threshold": 0.5,
                                    "label_meaning": meta.get("label_meaning", {"0": "low", "1": "high"})}},
          "training_data": {"n_patients": int(len(train)), "n_high": int(train.sum()) if len(train) else 0,
                            "n_images": meta.get("n_train_images"), "selection": meta.get("selection"),
                            "best_epoch": meta.get("best_epoch"),
                            "hyperparameters": {k: v for k, v in (meta.get("hyperparameters") or {}).items()
                                                if k != "weights_file"}},  # a local path
          "evaluation": evaluation(pred, config.get("statistics")) if len(pred) else {},
          "versions": {k: versions[k] for k in ("ccgrade", "torch", "torchvision", "numpy", "SimpleITK", "pydicom")
                       if k in versions},
          "intended_use": INTENDED_USE, "license": "MIT (code); the weights inherit the terms of the training data"}
    if trained:
        # a copy, not a hard link: Snakemake touches an output older than its inputs, and through a shared inode
        # that would make the cell's best.pt newer than every table already made from it
        shutil.copyfile(cell_dir / "best.pt", out_dir / "weights.pt")
    else:
        write_text(out_dir / "weights.pt", "")  # no network: an empty file says so beside metadata.json
    write_json(out_dir / "preprocess.json", pre)
    write_json(out_dir / "metadata.json", md)
    ev = md["evaluation"].get("test", {})
    write_text(out_dir / "README.md", "\n".join([
        f"# {md['name']}", "", INTENDED_USE, "",
        "```python", "from ccgrade import bundle", "b = bundle.load('.')",
        "images = b.predict('results/volumes/<patient>', {'cmp': {'mask': 'mask.nii.gz'}})  # per image",
        "p = b.patient_probability(images)", "```", "",
        f"Test set: {ev.get('n_patients', 0)} patients; AUC {ev['auc']:.3f} (95% CI {ev['auc_ci_95'][0]:.3f}-"
        f"{ev['auc_ci_95'][1]:.3f}, {ev['ci_method']})." if "auc" in ev else "Test set: no AUC (one grade group or none).", ""]))
    return md


class BundleError(ValueError):
    """A bundle file that is not what this pipeline writes (its path and the bad keys named)."""


@functools.cache
def _schemas() -> dict:
    from ccgrade.config.studyconfig import SCHEMA_DIR, config_schema, load_yaml

    doc = load_yaml(SCHEMA_DIR / "bundle.schema.yaml")
    whole = config_schema()  # (its registries' enums filled in)
    config = whole["properties"]
    pre = doc["$defs"]["preprocess"]["properties"]
    pre["roi"], pre["window"] = config["rois"]["additionalProperties"], config["windows"]["additionalProperties"]
    # the config's shared definitions the ROI setting refers to (its kind: #/$defs/roi_kind)
    doc["$defs"].update({k: v for k, v in whole.get("$defs", {}).items() if k not in doc["$defs"]})
    return {k: {"$schema": doc["$schema"], "$defs": doc["$defs"], "$ref": f"#/$defs/{k}"}
            for k in ("preprocess", "metadata")}


def validate(path: str | Path) -> tuple[dict, dict]:
    """A bundle folder's ``metadata.json`` and ``preprocess.json``, checked against ``bundle.schema.yaml``
    (every field; phases, targets and names from allow-lists, none a path) and the architecture registry;
    a ``BundleError`` names the file and every bad key. An untrained bundle has an empty preprocess."""
    from ccgrade.config.studyconfig import validate_against
    from ccgrade.config.architectures import names

    path = Path(path)
    docs = {}
    for name in ("metadata", "preprocess"):
        f = path / f"{name}.json"
        try:
            docs[name] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise BundleError(f"bundle file {f} cannot be read as JSON ({type(e).__name__}: {e})") from e
    md, pre = docs["metadata"], docs["preprocess"]
    schemas = _schemas()
    validate_against(md, schemas["metadata"], f"bundle file {path / 'metadata.json'}", BundleError)
    if md["trained"] or pre:
        validate_against(pre, schemas["preprocess"], f"bundle file {path / 'preprocess.json'}", BundleError)
        bad = [f"arch {pre['arch']!r} is not one of {', '.join(names())}"] if pre["arch"] not in names() else []
        for key, stray in (("targets", set(pre["targets"]) - {"stack"} - set(pre["phases"])),
                           ("stack_phases", set(pre["stack_phases"]) - set(pre["phases"]))):
            if stray:
                bad.append(f"{key} {sorted(stray)} are not among its phases")
        try:
            re.compile(pre["rtstruct_roi"])
        except re.error as e:
            bad.append(f"rtstruct_roi is not a regular expression ({e})")
        if bad:
            raise BundleError(f"bundle file {path / 'preprocess.json'} is invalid: " + "; ".join(bad))
    return md, pre


class Bundle:
    """A loaded bundle: the network on CPU (or ``device``) and its recorded preprocessing."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from ccgrade.learn import models

        self.path = Path(path)
        self.metadata, self.preprocess = validate(self.path)
        if not self.metadata.get("trained", True):
            raise ValueError(f"bundle {self.path} holds no network: {self.metadata.get('reason', 'not trained')}")
        import torch

        pre = self.preprocess
        self.device = device
        self.net = models.build_model(pre["arch"], in_channels=int(pre["input_shape"][0]),
                                      freeze_stages=pre.get("freeze_stages", 0))
        self.net.load_state_dict(torch.load(self.path / "weights.pt", map_location=device, weights_only=True))
        self.net.to(device).eval()

    def crops(self, volumes: str | Path, sources: dict[str, dict[str, str]], patient: str = "patient",
              secret: str | Path | None = None) -> dict:
        """The patient's crops made with the recorded preprocessing: {target: npz arrays}. ``secret``: the
        privacy key file the volumes were ingested with when they were pseudonymised (their slices' file
        names are then pseudonyms, which a labelme file's imagePath is matched to through the key)."""
        from ccgrade.privacy.pseudonyms import Keyer

        from ccgrade.preprocess.crops import crop_patient

        pre = self.preprocess
        missing = [t for t in pre["targets"] for ph in (pre["stack_phases"] if t == "stack" else [t])
                   if not (Path(volumes) / f"{ph}.nii.gz").exists()]
        if missing:
            raise ValueError(f"{patient}: the bundle needs phase(s) {sorted(set(missing))}, which {volumes} lacks")
        with tempfile.TemporaryDirectory() as tmp:
            man = crop_patient(patient, pre["roi_name"], pre["roi"], pre["window"], pre["phases"], pre["stack_phases"],
                               Path(volumes), sources, pre["mask_label"], Path(tmp), pre["rtstruct_roi"],
                               pre["rtstruct_link"], key=Keyer.from_file(secret), targets=list(pre["targets"]))
            out = {}
            for t in pre["targets"]:
                z = np.load(Path(tmp) / f"{t}.npz")
                out[t] = {k: z[k] for k in z.files}
        out["_manifest"] = man
        return out

    def predict(self, volumes: str | Path, sources: dict[str, dict[str, str]], patient: str = "patient",
                secret: str | Path | None = None) -> pd.DataFrame:
        """P(high) per image of one patient (columns patient_id, source, slice_index, prob_high), in the
        order of the crop files; a shape other than the network's input is an error naming both."""
        return self.predict_crops(self.crops(volumes, sources, patient, secret), patient)

    def predict_crops(self, crops: dict, patient: str = "patient") -> pd.DataFrame:
        """``predict`` on crops ``crops`` made (so that a caller drawing them, as ``ccgrade.deploy.predict`` does,
        crops once)."""
        from ccgrade.learn.train import predict

        rows = []
        for t in self.preprocess["targets"]:
            z = crops[t]
            if str(z["status"]) != "ok" or z["images"].shape[0] == 0:
                continue
            x = z["images"].astype(np.float32)
            if list(x.shape[1:]) != list(self.preprocess["input_shape"]):
                raise ValueError(f"{patient}: crops of shape {list(x.shape[1:])} but the network takes "
                                 f"{self.preprocess['input_shape']}")
            rows.append(pd.DataFrame({"patient_id": patient, "source": t, "slice_index": z["slice_index"].astype(int),
                                      "prob_high": predict(self.net, x, self.device)}))
        if not rows:
            reasons = "; ".join(crops["_manifest"]["reason"].astype(str))
            raise ValueError(f"{patient}: no usable crop ({reasons})")
        return pd.concat(rows, ignore_index=True)

    @staticmethod
    def patient_probability(images: pd.DataFrame) -> float:
        return float(images["prob_high"].mean())


def load(path: str | Path, device: str = "cpu") -> Bundle:
    return Bundle(path, device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export a trained cell as a model bundle.")
    ap.add_argument("--cell-dir", required=True)
    ap.add_argument("--cell", required=True, help="JSON {study, roi, arch, phases, variant, fold, seed}")
    ap.add_argument("--config", required=True, help="JSON: the config keys the preprocessing needs")
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args(argv)
    cell = json.loads(a.cell)
    md = export(a.cell_dir, a.out_dir, config=json.loads(a.config), cell=cell, study=cell["study"])
    print(json.dumps({"bundle": md["name"], "trained": md["trained"], "test": md["evaluation"].get("test", {})}))


if __name__ == "__main__":
    main()
