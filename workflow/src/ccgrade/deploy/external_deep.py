"""The fusion's deep block on the external centre (docs/deploy.md): the frozen cell's
embeddings of the external patients' crops, made with its bundle's recorded preprocessing (apart from
``ccgrade.deploy.external`` so that the external grading jobs do not depend on the fusion code)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.outputs import write_tsv


def deep_features(bundle_dir: str | Path, cell_dir: str | Path, hp: dict, patients: dict[str, dict],
                  secret: str | Path | None = None, score: bool = False) -> pd.DataFrame:
    """The fusion's deep block for the external patients: the frozen cell's embeddings (as
    ``fusion.deep_feature_table`` computes the cohort's) of crops made with its bundle's recorded
    preprocessing. ``patients``: ``{pid: {"volumes": folder, "sources": {phase: {format: file}}}}``. A patient
    the bundle cannot crop gets no row (the fusion leaves it out, saying so). ``score``: the out-of-fold
    deep block's one feature instead (``fusion.oof.cell_scores``: the cell's logit of mean P(high))."""
    import tempfile

    from ccgrade.deploy.bundle import Bundle
    from ccgrade.fusion.model import deep_feature_table
    from ccgrade.fusion.oof import cell_scores

    meta = json.loads((Path(bundle_dir) / "metadata.json").read_text())
    if not meta.get("trained", True):
        return pd.DataFrame(columns=["patient_id"])
    b = Bundle(bundle_dir)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for pid, p in patients.items():
            try:
                crops = b.crops(p["volumes"], p["sources"], pid, secret)
            except ValueError as e:
                print(f"{pid}: no deep features ({e})")
                continue
            for t in b.preprocess["targets"]:
                f = Path(tmp) / pid / f"{t}.npz"
                f.parent.mkdir(parents=True, exist_ok=True)
                np.savez(f, **crops[t])
                files.append(str(f))
        return cell_scores(cell_dir, hp, files) if score else deep_feature_table(str(cell_dir), hp, files)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="The fusion's deep block for the external patients.")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--cell", required=True)
    ap.add_argument("--hp", required=True)
    ap.add_argument("--patients", required=True, help="JSON {pid: {volumes, sources}}")
    ap.add_argument("--secret")
    ap.add_argument("--out", required=True)
    ap.add_argument("--score", action="store_true", help="the CNN's score (fusion.deep.oof_folds), not embeddings")
    a = ap.parse_args(argv)
    t = deep_features(a.bundle, a.cell, json.loads(a.hp), json.loads(a.patients), a.secret, score=a.score)
    write_tsv(a.out, t)
    print(f"{len(t)} patients, {max(t.shape[1] - 1, 0)} deep features")


if __name__ == "__main__":
    main()
