"""Honest stacking of the deep block: out-of-fold CNN scores for the fusion's training patients.

Sun et al.'s deep block is the embeddings of a CNN trained on the very training patients the fusion is then
fitted on: its training scores are in sample at the network step, so the combined model over-weights it and
its coefficients and likelihood-ratio tests are invalid (``fusion.model.IN_SAMPLE_BLOCKS``). With
``fusion.deep.oof_folds: k`` (k >= 2) the block is stacked as scikit-learn's ``StackingClassifier`` does:

- ``oof_split``: the fusion's training patients (train and validation of its holdout split) dealt into k
  folds, stratified as the parent scheme (``preprocess.splits.make_split``, seeded);
- the deep cell's recipe trained k more times, fold i on the other k - 1 folds (rule ``deep_oof_train``: the
  matrix cell's own training job, under ``paths.DEEP_OOF_DIR``);
- ``oof_scores``: the block becomes one feature, the CNN's score (``SCORE``: the mean over the patient's images
  of the network's log-odds of high grade, z_high - z_low, taken from its outputs so that a saturated network
  still ranks patients): for a training patient from the fold model that did not see it, for every other
  patient (the test set) from the cell trained on all training patients; ``cell_scores`` scores an external
  centre's patients the same way.

Each training patient's deep score then comes from a network that never saw its label, so the block's
coefficients, the combined model's and the likelihood-ratio tests are valid. The nested cross-validation still
leaves the block out: it would need the network retrained inside each outer fold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.outputs import read_table, write_json, write_tsv

#: the deep block's one feature in out-of-fold mode
SCORE = "cnn_logit"


def oof_split(split_rows: pd.DataFrame, *, k: int, seed: int, stratify: list[str], parent: str) -> dict:
    """The out-of-fold folds of the fusion's training patients: ``split_rows`` is the parent split's table
    (``paths.SPLIT_TSV``: patient_id, fold, set, grade_group, centre), fold 0's train and validation rows."""
    from ccgrade.errors import SplitError
    from ccgrade.preprocess.splits import make_split

    rows = split_rows[(split_rows["fold"] == 0) & split_rows["set"].isin(["train", "val"])]
    rows = rows.astype({"patient_id": str}).drop_duplicates("patient_id").reset_index(drop=True)
    counts = rows["grade_group"].value_counts() if "grade_group" in rows else pd.Series(dtype=int)
    if len(counts) < 2 or counts.min() < k:
        raise SplitError(f"fusion.deep.oof_folds: {k} folds need at least {k} training patients of each grade "
                         f"group; the {parent!r} training set has {counts.to_dict()}: lower oof_folds or set it to 0")
    folds = make_split(rows, {"kind": "kfold", "k": k, "stratify": stratify}, seed)
    return {"scheme": f"{parent}_oof", "kind": "kfold", "k": k, "seed": seed, "parent": parent,
            "n_patients": len(rows), "excluded": [], "folds": folds}


def patient_images(crop_files: list[str]):
    """(patient ID, float32 images) of each usable crop file (``<pid>/<target>.npz``, status ok, some images), in
    file-name order: what a cell's embeddings and scores are computed from."""
    for f in sorted(crop_files):
        z = np.load(f)
        if str(z["status"]) == "ok" and z["images"].shape[0]:
            yield Path(f).parent.name, z["images"].astype(np.float32)


def cell_scores(cell_dir: str | Path, hp: dict, crop_files: list[str]) -> pd.DataFrame:
    """One row per patient (``patient_id``, ``SCORE``): the mean of the cell's log-odds of high grade over the
    patient's images in ``crop_files`` (``<pid>/<target>.npz``); empty for a cell that was not trained."""
    import torch

    from ccgrade.learn import train

    if json.loads((Path(cell_dir) / "meta.json").read_text()).get("status") == "not trained":
        return pd.DataFrame(columns=["patient_id", SCORE])
    odds: dict[str, list[np.ndarray]] = {}
    net = None
    for pid, x in patient_images(crop_files):
        if net is None:
            net = train.load_best(cell_dir, hp, in_channels=x.shape[1]).eval()
        with torch.no_grad():
            z = torch.cat([net(torch.from_numpy(x[s:s + 64])) for s in range(0, len(x), 64)]).double()
        odds.setdefault(pid, []).append((z[:, 1] - z[:, 0]).numpy())
    rows = [{"patient_id": p, SCORE: float(np.concatenate(v).mean())} for p, v in sorted(odds.items())]
    return pd.DataFrame(rows, columns=["patient_id", SCORE])


def oof_scores(main_cell: str, fold_cells: list[str], split: dict, hp: dict, crop_files: list[str]
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deep block's table (``patient_id``, ``SCORE``) and its provenance (``patient_id``, ``model``: the
    fold cell or the main cell, ``fold``): each of ``split``'s held-out patients scored by its fold's cell, every
    other patient by ``main_cell``."""
    if len(fold_cells) != len(split["folds"]):
        raise ValueError(f"{len(fold_cells)} fold cells for the split's {len(split['folds'])} folds")
    by_patient: dict[str, list[str]] = {}
    for f in crop_files:
        by_patient.setdefault(Path(f).parent.name, []).append(f)
    held = {p: i for i, fold in enumerate(split["folds"]) for p in fold["test"]}
    parts = []
    for i, cell in enumerate(fold_cells):
        files = [f for p in split["folds"][i]["test"] for f in by_patient.get(p, [])]
        parts.append(cell_scores(cell, hp, files).assign(model=cell, fold=i))
    rest = [f for p, fs in by_patient.items() if p not in held for f in fs]
    parts.append(cell_scores(main_cell, hp, rest).assign(model=main_cell, fold=-1))
    t = pd.concat(parts, ignore_index=True).sort_values("patient_id", kind="stable").reset_index(drop=True)
    return t[["patient_id", SCORE]], t[["patient_id", "model", "fold"]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Out-of-fold deep block of the fusion (docs/statistics.md).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="the out-of-fold folds of the fusion's training patients")
    s.add_argument("--split-tsv", required=True)
    s.add_argument("--parent", required=True)
    s.add_argument("--k", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--stratify", nargs="*", default=["grade_group", "centre"])
    s.add_argument("--json", required=True)
    c = sub.add_parser("scores", help="the deep block: out-of-fold CNN scores")
    c.add_argument("--cell", required=True)
    c.add_argument("--folds", nargs="+", required=True)
    c.add_argument("--split", required=True)
    c.add_argument("--hp", required=True)
    c.add_argument("--crops", nargs="+", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--sources", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "split":
        doc = oof_split(read_table(a.split_tsv), k=a.k, seed=a.seed, stratify=a.stratify, parent=a.parent)
        write_json(a.json, doc)
        print(f"{doc['n_patients']} training patients in {a.k} folds: " + ", ".join(
            str(len(f["test"])) for f in doc["folds"]))
        return
    t, src = oof_scores(a.cell, a.folds, json.loads(Path(a.split).read_text()), json.loads(a.hp), a.crops)
    write_tsv(a.out, t)
    write_tsv(a.sources, src)
    print(f"{len(t)} patients scored, {int((src['fold'] >= 0).sum())} of them out of fold")


if __name__ == "__main__":
    main()
