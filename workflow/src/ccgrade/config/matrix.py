"""The model matrix of a config: one cell per (study, ROI setting, architecture, phase set, variant, fold, seed).

A study (config ``training.studies.<name>``) names a hyperparameter preset, a split scheme and its
models. A model is an architecture with a list of phase sets, trained on the study's ROI setting, or an
architecture with its own ``{roi, phases}`` (Li: the 3D network on ``cube``, the 2D one on ``slice``). A
list of ROI settings (Sun: ``roi: [box, tumor, box5mm]``) is an axis: every model is trained on each.
``variants`` multiply the cells by hyperparameter changes (Dai's batch-size sweep); a k-fold scheme
multiplies them by its folds (a holdout scheme has one). A cell's hyperparameters are its preset, then
its architecture's ``overrides``, then its variant's, so a changed override reruns only its cells.
"""

from __future__ import annotations

CELL_DIR = "results/models/{study}/{roi}/{arch}/{phases}/{variant}/fold{fold}/seed{seed}"
#: a cell's exported model bundle (ccgrade.deploy.bundle)
BUNDLE_DIR = CELL_DIR.replace("results/models/", "results/bundles/", 1)
BASE_VARIANT = "base"
PHASE_SETS_EXTRA = ("all", "stack")  # all: the phases' images pooled (Cui); stack: phases as channels (Sun)


def _rois(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def study_models(st: dict) -> list[tuple[str, str, list[str]]]:
    """(architecture, ROI setting, phase sets) of a study's models: one entry per ROI setting the model is
    trained on (its own ``roi``, else the study's; either may be a list)."""
    out = []
    for arch, spec in st["models"].items():
        own = spec.get("roi", st.get("roi")) if isinstance(spec, dict) else st.get("roi")
        sets = list(spec["phases"]) if isinstance(spec, dict) else list(spec)
        out += [(arch, roi, sets) for roi in _rois(own)]
    return out


def deep_cell(cfg: dict) -> dict | None:
    """The trained cell whose embeddings are the fusion's deep block (``fusion.deep``; its ``roi`` defaults to
    the first ROI setting the study trains that architecture on), or None."""
    deep = cfg["fusion"]["deep"]
    studies = cfg["training"]["studies"]
    if not deep or deep["study"] not in studies:
        return None
    rois = [roi for a, roi, _ in study_models(studies[deep["study"]]) if a == deep["arch"]]
    return {"study": deep["study"], "arch": deep["arch"], "phases": deep["phases"], "variant": deep["variant"],
            "fold": 0, "seed": deep["seed"], "roi": deep["roi"] if "roi" in deep else rois[0]}


def n_folds(scheme: dict) -> int:
    """How many folds a trainable split scheme has (holdout: 1, k-fold: k)."""
    return int(scheme["k"]) if scheme["kind"] == "kfold" else 1


def variants(st: dict) -> dict[str, dict]:
    return st.get("variants") or {BASE_VARIANT: {}}


def cells(cfg: dict, study: str | None = None) -> list[dict]:
    """Every cell of the matrix (or of one study), as wildcard values plus the cell's ROI."""
    out = []
    for name, st in cfg.get("training", {}).get("studies", {}).items():
        if study is not None and name != study:
            continue
        folds = n_folds(cfg["splits"]["schemes"][st["scheme"]])
        for arch, roi, sets in study_models(st):
            for ph in sets:
                for var in variants(st):
                    for fold in range(folds):
                        for seed in st["seeds"]:
                            out.append({"study": name, "arch": arch, "phases": ph, "variant": var, "fold": fold,
                                        "seed": seed, "roi": roi})
    return out


def cell_dir(cell: dict) -> str:
    return CELL_DIR.format(**cell)


def hyper(cfg: dict, study: str, arch: str, variant: str) -> dict:
    """A cell's hyperparameters: preset, then the architecture's overrides, then the variant's."""
    st = cfg["training"]["studies"][study]
    hp = dict(cfg["training"]["presets"][st["preset"]])
    hp.update(st.get("overrides", {}).get(arch, {}))
    hp.update(variants(st).get(variant, {}))
    if cfg["training"].get("fast"):  # only when set: the default recipes (and their cached cells) stay as they were
        hp.setdefault("fast", True)
    hp["arch"] = arch
    return hp


def crop_targets(phases: str, all_phases: list[str]) -> list[str]:
    """The crop files (per phase, or ``stack``) a phase set trains on."""
    return list(all_phases) if phases == "all" else [phases]
