"""The model matrix of a config: one cell per (study, architecture, phase set, variant, fold, seed).

A study (config ``training.studies.<name>``) names a hyperparameter preset, a split scheme and its
models. A model is an architecture with a list of phase sets, trained on the study's ROI setting, or an
architecture with its own ``{roi, phases}`` (Li: the 3D network on ``cube``, the 2D one on ``slice``).
``variants`` multiply the cells by hyperparameter changes (Dai's batch-size sweep); a k-fold scheme
multiplies them by its folds (a holdout scheme has one). A cell's hyperparameters are its preset, then
its architecture's ``overrides``, then its variant's, so a changed override reruns only its cells.
"""

from __future__ import annotations

from .errors import ConfigError

CELL_DIR = "results/models/{study}/{arch}/{phases}/{variant}/fold{fold}/seed{seed}"
BASE_VARIANT = "base"
PHASE_SETS_EXTRA = ("all", "stack")  # all: the phases' images pooled (Cui); stack: phases as channels (Sun)


def study_models(st: dict) -> list[tuple[str, str, list[str]]]:
    """(architecture, ROI setting, phase sets) of a study's models."""
    out = []
    for arch, spec in st["models"].items():
        if isinstance(spec, dict):
            out.append((arch, spec.get("roi", st.get("roi")), list(spec["phases"])))
        else:
            out.append((arch, st.get("roi"), list(spec)))
    return out


def model_roi(st: dict, arch: str) -> str:
    return next(roi for a, roi, _ in study_models(st) if a == arch)


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
    hp["arch"] = arch
    return hp


def crop_targets(phases: str, all_phases: list[str]) -> list[str]:
    """The crop files (per phase, or ``stack``) a phase set trains on."""
    return list(all_phases) if phases == "all" else [phases]


def check_training(cfg: dict) -> None:
    """Cross-checks of ``training`` (and ``radiomics``/``fusion``, see ``check_fusion``) the schema cannot
    express; errors name the key."""
    tr = cfg.get("training", {})
    phases = list(cfg["phases"])
    for name, st in tr.get("studies", {}).items():
        key = f"config key 'training.studies.{name}"
        if st["preset"] not in tr["presets"]:
            raise ConfigError(f"{key}.preset': no preset named {st['preset']!r} (defined: {', '.join(tr['presets'])})")
        sch = cfg["splits"]["schemes"].get(st["scheme"])
        if sch is None:
            raise ConfigError(f"{key}.scheme': no split scheme named {st['scheme']!r}")
        if sch["kind"] == "holdout" and "test" not in sch.get("fractions", {}):
            raise ConfigError(f"{key}.scheme': a holdout scheme needs a test set")
        if sch["kind"] not in ("holdout", "kfold"):
            raise ConfigError(f"{key}.scheme': models train on holdout or k-fold schemes, not {sch['kind']!r} "
                              "(its number of folds depends on the cohort)")
        for arch, roi, sets in study_models(st):
            if roi is None:
                raise ConfigError(f"{key}.models.{arch}': no ROI setting (give the study's 'roi' or the model's)")
            if roi not in cfg["rois"]:
                raise ConfigError(f"{key}.roi': no ROI setting named {roi!r}")
            bad = [p for p in sets if p not in phases + list(PHASE_SETS_EXTRA)]
            if bad:
                raise ConfigError(f"{key}.models.{arch}': phase sets {bad} are not configured phases, all or stack")
            if (arch == "resnet3d18") != (cfg["rois"][roi]["kind"] == "cube"):
                raise ConfigError(f"{key}.models.{arch}': resnet3d18 goes with the 3D 'cube' ROI kind, 2D "
                                  "architectures with the 2D kinds")
        for arch in st.get("overrides", {}):
            if arch not in st["models"]:
                raise ConfigError(f"{key}.overrides.{arch}': the study has no {arch} model")
    check_fusion(cfg)


def check_fusion(cfg: dict) -> None:
    """Cross-checks of ``radiomics`` and ``fusion``; errors name the key."""
    rad, fus = cfg.get("radiomics", {}), cfg.get("fusion", {})
    if rad.get("enabled"):
        if rad["phase"] not in cfg["phases"]:
            raise ConfigError(f"config key 'radiomics.phase': {rad['phase']!r} is not in 'phases' ({cfg['phases']})")
        roi = cfg["rois"].get(rad["roi"])
        if roi is None:
            raise ConfigError(f"config key 'radiomics.roi': no ROI setting named {rad['roi']!r}")
        src = roi.get("source", "mask" if roi["kind"] in ("tumor", "cube", "slice") else "")
        if not set([src] if isinstance(src, str) else src) & {"mask", "rtstruct", "polygons"}:
            raise ConfigError(f"config key 'radiomics.roi': {rad['roi']!r} reads {src or 'boxes'}; radiomics needs "
                              "a tumour outline (mask, rtstruct or polygons)")
    if fus.get("enabled"):
        sch = cfg["splits"]["schemes"].get(fus["scheme"])
        if sch is None or sch["kind"] != "holdout" or "test" not in sch.get("fractions", {}):
            raise ConfigError("config key 'fusion.scheme': needs a holdout split scheme with a test set")
        deep = fus.get("deep")
        if deep:
            st = cfg.get("training", {}).get("studies", {}).get(deep["study"])
            if st is None or deep["arch"] not in st["models"] or \
                    deep["phases"] not in dict((a, s) for a, _, s in study_models(st))[deep["arch"]]:
                raise ConfigError("config key 'fusion.deep': no such cell in training.studies "
                                  f"({deep['study']}/{deep['arch']}/{deep['phases']})")
            if st["scheme"] != fus["scheme"]:
                raise ConfigError(f"config key 'fusion.deep': the cell trains on split {st['scheme']!r} but the "
                                      f"fusion uses {fus['scheme']!r}: its embeddings would have seen test patients")
        known = {v["name"] for v in cfg["baseline"]["variables"]}
        bad = [c for c in fus.get("clinical", []) if c not in known]
        if bad:
            raise ConfigError(f"config key 'fusion.clinical': {bad} are not baseline.variables (which give their type)")
