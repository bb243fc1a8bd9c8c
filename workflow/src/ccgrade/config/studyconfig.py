"""The study configuration: schema validation, every cross-key problem at once, keys a user config replaces
(not merges), and the config derived from the cohort (``auto`` values resolved, parts it cannot feed
skipped with a reason).

``derive_config`` is what lets one config serve cohorts as different as the four-phase demo and a
one-phase RTSTRUCT cohort: ``phases: auto`` becomes the phases the cohort's images have (DICOM series as the
header index assigns them, image_<phase> volumes, masks for mask-only cohorts); the stack, the split
requirements and the geometry/radiomics phase follow; each study's phase sets are cut to what the cohort
has; a study, ROI setting or fusion block the cohort cannot feed is left out with a ``skipped`` line.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ccgrade import PHASE_NAMES
from ccgrade.config.architectures import REGISTRY, is_3d, names
from ccgrade.config.rois import OUTLINE_FORMATS
from ccgrade.config.rois import REGISTRY as ROI_KINDS
from ccgrade.config.rois import names as roi_kind_names
from ccgrade.errors import ConfigError, Problem, raise_errors

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
PHASE_ORDER = list(PHASE_NAMES)  # up, cmp, np, ep
#: which phase a study prefers when its own is missing (Sun and Dai: the arterial phase first)
PHASE_PREFERENCE = ["cmp", "np", "ep", "up"]
#: the order ``source: auto`` tries annotation formats in, per ROI kind (the papers' own format first)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file (libyaml's safe loader when PyYAML has it: ten times faster at parse time)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_against(instance: Any, schema: dict, what: str, exc: type = ConfigError) -> None:
    """Validate ``instance`` against a JSON schema; raise ``exc`` naming every bad key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  - {what} key '{_key(e.absolute_path)}': {e.message}" for e in errors]
        raise exc(f"{what} is invalid:\n" + "\n".join(lines))


def _defaulting(cls):
    """``cls`` extended to fill each absent property that has a schema ``default`` (a deep copy) before
    validating it, the recipe of jsonschema's FAQ and of snakemake.utils.validate(set_default=True): a
    default object is then itself filled from its properties' defaults. (Put no default under a oneOf
    branch of objects: a branch that fails would still have written its defaults.)"""
    base = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base(validator, props, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": properties})


_FILLING = _defaulting(jsonschema.Draft202012Validator)


def config_schema(schema_path: str | Path | None = None) -> dict:
    """The config schema, its architecture and ROI-kind enums filled from their registries
    (``ccgrade.config.architectures``, ``ccgrade.config.rois``): each is named in one place."""
    schema = load_yaml(schema_path or SCHEMA_DIR / "config.schema.yaml")
    defs = schema.get("$defs", {})
    if "architecture" in defs:
        defs["architecture"]["enum"] = list(names())
    if "roi_kind" in defs:
        defs["roi_kind"]["enum"] = list(roi_kind_names())
    return schema


def apply_defaults(cfg: dict, schema_path: str | Path | None = None) -> dict:
    """``cfg`` with every schema default filled in where the key is absent (in place; also returned). The
    schema is the one place a default is written: rules and stages read the filled config."""
    schema = config_schema(schema_path)
    for _ in _FILLING(schema).iter_errors(cfg):
        pass
    return cfg


def schema_problems(cfg: dict, schema_path: str | Path | None = None) -> list[Problem]:
    """Every key of ``cfg`` the schema rejects, one problem each; the schema's defaults are filled in
    (``apply_defaults``) as it is checked."""
    schema = config_schema(schema_path)
    validator = _FILLING(schema)
    out = []
    for e in sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path))):
        out.append(Problem("error", f"config key '{_key(e.absolute_path)}': {e.message}",
                           "see config.yaml, where every key is documented"))
    return out


# ------------------------------------------------------------------------------------------ replace keys

def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _set(cfg: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)


def apply_replace(cfg: dict, user_configs: list[dict]) -> list[Problem]:
    """Snakemake merges a ``--configfile`` into config.yaml mapping by mapping, so the default studies and ROI
    settings stay. A user config that lists keys under ``replace`` (e.g. ``replace: [training.studies, rois]``)
    has those mappings taken from it whole. Modifies ``cfg``; returns the problems."""
    out = []
    for user in user_configs:
        for dotted in (user or {}).get("replace") or []:
            try:
                _set(cfg, dotted, _get(user, dotted))
            except KeyError:
                out.append(Problem("error", f"config key 'replace': {dotted!r} is listed but the same config file "
                                            "does not set it", f"add {dotted} to that file or remove it from replace"))
    cfg.pop("replace", None)
    return out


# ------------------------------------------------------------------------------------------ cross-key problems

def config_problems(cfg: dict) -> list[Problem]:
    """What the schema cannot express: names that must exist, phases that must be configured, ROI kinds that
    fit architectures, split schemes that fit models and the fusion; every problem at once."""
    out: list[Problem] = []

    def err(key: str, msg: str, fix: str = "") -> None:
        out.append(Problem("error", f"config key '{key}': {msg}", fix))

    phases = list(cfg["phases"])
    for name, roi in cfg["rois"].items():
        if roi["window"] not in cfg["windows"]:
            err(f"rois.{name}.window", f"unknown window preset '{roi['window']}' (defined: {', '.join(cfg['windows'])})",
                "name a preset of windows, or add one")
    for key, lst in (("stack.phases", cfg["stack"]["phases"]), ("splits.require_phases", cfg["splits"]["require_phases"])):
        bad = [p for p in lst if p not in phases]
        if bad:
            err(key, f"phases {bad} are not in 'phases' ({phases})", "use phase codes from 'phases'")
    for name in cfg["splits"]["schemes"]:
        if not re.fullmatch(r"[a-z0-9_]+", name):
            err(f"splits.schemes.{name}", "scheme names must match [a-z0-9_]+", "rename the scheme")
    tt = cfg["baseline"]["train_test_split"]
    if tt not in cfg["splits"]["schemes"]:
        err("baseline.train_test_split", f"no split scheme named '{tt}'", "name one of splits.schemes")
    if cfg["cohort"]["source"] == "sheet" and not cfg["cohort"].get("sheet"):
        err("cohort.sheet", "required when cohort.source is 'sheet'", "give the path of your cohort sheet")
    if cfg["cohort"]["source"] == "kits" and not cfg["cohort"].get("kits"):
        err("cohort.kits", "required when cohort.source is 'kits' (give kits.root)")
    if cfg["geometry"]["enabled"] and cfg["geometry"]["phase"] not in phases:
        err("geometry.phase", f"{cfg['geometry']['phase']!r} is not in 'phases' ({phases})")
    if cfg.get("rtstruct_roi"):
        try:
            re.compile(cfg["rtstruct_roi"])
        except re.error as e:
            err("rtstruct_roi", f"not a regular expression ({e})", "e.g. 'tumou?r|gtv'")
    if cfg["figures"]["montage_roi"] not in cfg["rois"]:
        err("figures.montage_roi", f"no ROI setting named {cfg['figures']['montage_roi']!r}")
    return out + training_problems(cfg) + fusion_problems(cfg)


def training_problems(cfg: dict) -> list[Problem]:
    """Cross-checks of ``training``; problems name the key."""
    from ccgrade.config.matrix import PHASE_SETS_EXTRA, study_models

    out: list[Problem] = []
    tr = cfg.get("training", {})
    phases = list(cfg["phases"])
    for name, st in tr.get("studies", {}).items():
        key = f"config key 'training.studies.{name}"

        def err(suffix: str, msg: str, fix: str = "") -> None:
            out.append(Problem("error", f"{key}{suffix}': {msg}", fix))

        if st["preset"] not in tr["presets"]:
            err(".preset", f"no preset named {st['preset']!r} (defined: {', '.join(tr['presets'])})")
        sch = cfg["splits"]["schemes"].get(st["scheme"])
        if sch is None:
            err(".scheme", f"no split scheme named {st['scheme']!r}")
        elif sch["kind"] == "holdout" and "test" not in sch.get("fractions", {}):
            err(".scheme", "a holdout scheme needs a test set")
        elif sch["kind"] not in ("holdout", "kfold"):
            err(".scheme", f"models train on holdout or k-fold schemes, not {sch['kind']!r} (its number of folds "
                           "depends on the cohort)")
        for arch, roi, sets in study_models(st):
            if roi is None:
                err(f".models.{arch}", "no ROI setting (give the study's 'roi' or the model's)")
                continue
            if roi not in cfg["rois"]:
                err(".roi", f"no ROI setting named {roi!r}")
                continue
            bad = [p for p in sets if p not in phases + list(PHASE_SETS_EXTRA)]
            if bad:
                err(f".models.{arch}", f"phase sets {bad} are not configured phases, all or stack")
            if arch in REGISTRY and is_3d(arch) != (ROI_KINDS[cfg["rois"][roi]["kind"]].dims == 3):
                err(f".models.{arch}", f"{arch} is {REGISTRY[arch].dims}D: 3D architectures go with the 'cube' ROI "
                                       "kind, 2D ones with the 2D kinds")
        for arch in st.get("overrides", {}):
            if arch not in st["models"]:
                err(f".overrides.{arch}", f"the study has no {arch} model")
    return out


def fusion_problems(cfg: dict) -> list[Problem]:
    """Cross-checks of ``radiomics`` and ``fusion``; problems name the key."""
    from ccgrade.config.matrix import study_models

    out: list[Problem] = []

    def err(key: str, msg: str, fix: str = "") -> None:
        out.append(Problem("error", f"config key '{key}': {msg}", fix))

    rad, fus = cfg.get("radiomics", {}), cfg.get("fusion", {})
    if rad.get("enabled"):
        if rad["phase"] not in cfg["phases"]:
            err("radiomics.phase", f"{rad['phase']!r} is not in 'phases' ({cfg['phases']})")
        roi = cfg["rois"].get(rad["roi"])
        if roi is None:
            err("radiomics.roi", f"no ROI setting named {rad['roi']!r}")
        else:
            src = roi_formats(roi)
            if not set(src) & set(OUTLINE_FORMATS):
                err("radiomics.roi", f"{rad['roi']!r} reads {'/'.join(src)}; radiomics needs a tumour outline (mask, "
                                     "rtstruct or polygons)", "name an ROI setting of kind tumor")
    if fus.get("enabled"):
        sch = cfg["splits"]["schemes"].get(fus["scheme"])
        if sch is None or sch["kind"] != "holdout" or "test" not in sch.get("fractions", {}):
            err("fusion.scheme", "needs a holdout split scheme with a test set")
        deep = fus.get("deep")
        if deep:
            st = cfg.get("training", {}).get("studies", {}).get(deep["study"])
            if st is None or deep["arch"] not in st["models"] or \
                    deep["phases"] not in dict((a, s) for a, _, s in study_models(st))[deep["arch"]]:
                err("fusion.deep", f"no such cell in training.studies ({deep['study']}/{deep['arch']}/{deep['phases']})")
            elif st["scheme"] != fus["scheme"]:
                err("fusion.deep", f"the cell trains on split {st['scheme']!r} but the fusion uses {fus['scheme']!r}: "
                                   "its embeddings would have seen test patients")
            elif "roi" in deep and deep["roi"] not in [r for a, r, _ in study_models(st) if a == deep["arch"]]:
                err("fusion.deep.roi", f"{deep['study']}/{deep['arch']} is not trained on ROI setting {deep['roi']!r}")
        known = {v["name"] for v in cfg["baseline"]["variables"]}
        bad = [c for c in fus.get("clinical", []) if c not in known]
        if bad:
            err("fusion.clinical", f"{bad} are not baseline.variables (which give their type)",
                "add them to baseline.variables")
    return out


def used_columns(cfg: dict) -> list[str]:
    """Sheet columns the study reads besides the contract's own: the variables of the baseline tables and the
    fusion, and the split schemes' stratification columns."""
    names = [v["name"] for v in cfg.get("baseline", {}).get("variables", [])]
    names += list(cfg.get("fusion", {}).get("clinical", []) or [])
    names += [c for sch in cfg.get("splits", {}).get("schemes", {}).values() for c in sch.get("stratify", [])]
    return list(dict.fromkeys(names))


def full_facts(cfg: dict) -> dict:
    """The facts of a cohort that has everything: every phase imaged and outlined, every annotation format,
    every column the config names (how a config is checked before a cohort is known)."""
    every = {p: 1 for p in PHASE_ORDER}
    return {"imaged": every, "outlined": every, "formats": {f: 1 for f in ("labelme", "mask", "polygons", "rtstruct")},
            "columns": used_columns(cfg), "any_images": True, "common": list(PHASE_ORDER)}


def model_schemes(cfg: dict) -> set[str]:
    """The split schemes models are trained and tested on: every study's and the fusion's."""
    used = {st["scheme"] for st in cfg.get("training", {}).get("studies", {}).values()}
    if cfg.get("fusion", {}).get("enabled"):
        used.add(cfg["fusion"]["scheme"])
    return used


def split_size_problems(cfg: dict, n: int) -> list[Problem]:
    """Split schemes the study trains or tests on that ``n`` eligible patients cannot fill."""
    used = model_schemes(cfg) | {cfg["baseline"]["train_test_split"]}
    out = []
    for name in sorted(used):
        sch = cfg["splits"]["schemes"].get(name)
        if sch is None:
            continue
        if sch["kind"] == "kfold" and int(sch["k"]) > n:
            out.append(Problem("error", f"config key 'splits.schemes.{name}.k': a {sch['k']}-fold split needs at least "
                                        f"{sch['k']} patients; the cohort has {n} eligible",
                               f"set splits.schemes.{name}.k to {max(2, n)} or less", scope="study"))
        if sch["kind"] == "holdout" and n < len(sch.get("fractions", {})):
            out.append(Problem("error", f"config key 'splits.schemes.{name}': {len(sch['fractions'])} sets cannot be "
                                        f"filled from {n} eligible patients", "add patients", scope="study"))
    return out


def validate_config(cfg: dict, schema_path: str | Path | None = None) -> dict:
    """Validate a study configuration (schema, then the cross-key checks on it as derived for a cohort that has
    everything); raise every problem at once. Returns ``cfg`` unchanged."""
    probs = schema_problems(cfg, schema_path)
    raise_errors(probs, ConfigError, "config")
    derived, _ = derive_config(cfg, full_facts(cfg))
    raise_errors(config_problems(derived), ConfigError, "config")
    return cfg


# ------------------------------------------------------------------------------------------ derived config

def roi_formats(roi: dict) -> list[str]:
    """The annotation formats an ROI setting accepts, in order (``auto``: the kind's order, ``ccgrade.config.rois``)."""
    src = roi.get("source") or "auto"
    if src == "auto":
        return list(ROI_KINDS[roi["kind"]].sources)
    return [src] if isinstance(src, str) else list(src)


def _ordered(phases) -> list[str]:
    return [p for p in PHASE_ORDER if p in set(phases)]


def derive_config(cfg: dict, facts: dict) -> tuple[dict, list[Problem]]:
    """Resolve ``auto`` and cut the study to what the cohort can feed.

    ``facts``: ``imaged`` {phase: number of patients with an image of it}, ``outlined`` {phase: patients with
    a tumour outline}, ``formats`` {format: patients with it on any phase}, ``columns`` (the cohort's
    columns, derived ones included), ``any_images`` (bool). Returns the concrete config and ``skipped``/
    ``warning`` problems saying what was left out or chosen and why. Each section is derived by a function
    of its own, in this order (later sections read what earlier ones decided).
    """
    cfg = copy.deepcopy(cfg)
    notes: list[Problem] = []
    imaged = {p: n for p, n in facts.get("imaged", {}).items() if n}
    outlined = {p: n for p, n in facts.get("outlined", {}).items() if n}
    phases = _derive_phases(cfg, imaged, outlined, notes)
    stack_ok = _derive_stack(cfg, phases)
    _derive_split_phases(cfg, facts, phases, imaged, notes)
    _derive_one_phase_sections(cfg, phases, outlined, notes)
    removed_rois = _derive_rois(cfg, facts, notes)
    if not cfg["rois"]:
        return cfg, notes
    _derive_studies(cfg, facts, phases, stack_ok, removed_rois, notes)
    _derive_variables(cfg, facts, notes)
    _derive_radiomics(cfg, outlined, removed_rois, notes)
    _derive_fusion(cfg, facts, notes)
    return cfg, notes


def _skip(notes: list[Problem], msg: str, fix: str = "") -> None:
    notes.append(Problem("skipped", msg, fix))


def _derive_phases(cfg: dict, imaged: dict, outlined: dict, notes: list[Problem]) -> list[str]:
    """``phases``: the cohort's (imaged, else outlined) when auto; configured ones it lacks left out."""
    have = _ordered(imaged) or _ordered(outlined)
    if cfg["phases"] == "auto":
        cfg["phases"] = have or ["cmp"]
    else:
        lacking = [p for p in cfg["phases"] if have and p not in have]
        if lacking and have:
            _skip(notes, f"config key 'phases': {lacking} not found in the cohort (it has {have}); left out",
                  "set phases: auto, or check ingest.phase_map / the image_<phase> columns")
            cfg["phases"] = [p for p in cfg["phases"] if p in have] or have
    return list(cfg["phases"])


def _derive_stack(cfg: dict, phases: list[str]) -> bool:
    """``stack.phases`` (Sun's channels): the contrast phases when two or more; whether it is a stack."""
    if cfg["stack"]["phases"] == "auto":
        contrast = [p for p in ("cmp", "np", "ep") if p in phases]
        cfg["stack"]["phases"] = contrast if len(contrast) >= 2 else phases
    else:
        cfg["stack"]["phases"] = [p for p in cfg["stack"]["phases"] if p in phases] or phases[:1]
    return len(cfg["stack"]["phases"]) >= 2


def _derive_split_phases(cfg: dict, facts: dict, phases: list[str], imaged: dict, notes: list[Problem]) -> None:
    """``splits.require_phases``: the phases every imaged patient has (all of them for a complete cohort; none
    for masks only), so that a patient is left out of the splits only for a phase the cohort otherwise has."""
    req = cfg["splits"]["require_phases"]
    common = facts.get("common", [p for p in phases if p in imaged])
    cfg["splits"]["require_phases"] = [p for p in phases if p in common] if req == "auto" else [p for p in req if p in phases]
    partial = [p for p in phases if p in imaged and p not in cfg["splits"]["require_phases"]]
    if req == "auto" and partial:
        notes.append(Problem("warning", "splits.require_phases: not every patient has " + ", ".join(
            f"{p} ({imaged[p]} do)" for p in partial) + "; those patients stay in the splits and the models of the "
            "phases they lack train and test without them", "list the phases every patient must have in "
            "splits.require_phases to leave the others out instead"))


def _derive_one_phase_sections(cfg: dict, phases: list[str], outlined: dict, notes: list[Problem]) -> None:
    """``geometry.phase`` and ``radiomics.phase``: one phase for the whole cohort (features of different phases
    do not mix), the one most patients have a tumour outline on."""
    best = max(phases, key=lambda p: (outlined.get(p, 0), -PHASE_PREFERENCE.index(p))) if phases else "cmp"
    for section in ("geometry", "radiomics"):
        sec = cfg.get(section)
        if not sec:
            continue
        if sec.get("phase") == "auto":
            sec["phase"] = best
        elif sec.get("enabled") and sec["phase"] not in phases:
            notes.append(Problem("warning", f"config key '{section}.phase': {sec['phase']!r} is not a phase of the "
                                            f"cohort ({phases}); using {best}, the phase most patients have a tumour "
                                            "outline on", f"set {section}.phase: auto"))
            sec["phase"] = best


def _derive_rois(cfg: dict, facts: dict, notes: list[Problem]) -> set[str]:
    """The ROI settings the cohort has an annotation for; the others left out (their names returned)."""
    fmts = {f for f, n in facts.get("formats", {}).items() if n}
    removed_rois = set()
    for name, roi in list(cfg["rois"].items()):
        if not set(roi_formats(roi)) & fmts:
            auto = roi.get("source", "auto") == "auto"
            _skip(notes, f"ROI setting {name!r}: no patient has a {' or '.join(roi_formats(roi))} annotation",
                  f"add {' or '.join(roi_formats(roi))} annotations to use it" if auto else
                  f"set rois.{name}.source: auto to use whatever annotation each patient has")
            del cfg["rois"][name]
            removed_rois.add(name)
    if not cfg["rois"]:
        notes.append(Problem("error", "no ROI setting can be fed: the cohort has no tumour annotation",
                             "add masks, RTSTRUCTs, polygons or labelme boxes (see docs/cohort.md), "
                             "or ask for the ingest only: snakemake --cores 2 ingest", scope="crops"))
    elif cfg["figures"]["montage_roi"] in removed_rois:
        cfg["figures"]["montage_roi"] = next(iter(cfg["rois"]))
    return removed_rois


def _derive_studies(cfg: dict, facts: dict, phases: list[str], stack_ok: bool, removed_rois: set[str],
                    notes: list[Problem]) -> None:
    """Each study's models cut to the cohort: phase sets to its phases (a study of single phases falls back to
    the preferred one), ROI settings to those left; a study with no model left is left out."""
    studies = cfg.get("training", {}).get("studies", {})
    for sname, st in list(studies.items()):
        removed_models = _derive_study_models(sname, st, cfg, phases, stack_ok, removed_rois, notes)
        for arch in list(st.get("overrides", {})):
            if arch not in st["models"] and arch in removed_models:
                del st["overrides"][arch]
        if not st["models"]:
            _skip(notes, f"training.studies.{sname}: the cohort feeds none of its models; the study is left out")
            del studies[sname]
    if not facts.get("any_images", True) and studies:
        _skip(notes, "training: no patient has images (masks only); the model matrix is left out")
        studies.clear()


def _derive_study_models(sname: str, st: dict, cfg: dict, phases: list[str], stack_ok: bool,
                         removed_rois: set[str], notes: list[Problem]) -> set[str]:
    """One study's models cut to the cohort (``_derive_studies``); the architectures left out."""
    from ccgrade.config.matrix import study_models

    removed_models = set()
    for arch, roi, sets in study_models(st):
        if arch not in st["models"]:
            continue  # left out on an earlier ROI setting
        spec = st["models"][arch]
        if roi in removed_rois:
            holder = spec if isinstance(spec, dict) and "roi" in spec else st
            rois = holder.get("roi")
            if isinstance(rois, list):  # an ROI axis: only that setting goes
                if roi in rois:
                    rois.remove(roi)
                    _skip(notes, f"training.studies.{sname}: ROI setting {roi!r} is left out of its ROI settings")
                if rois:
                    continue
            _skip(notes, f"training.studies.{sname}.models.{arch}: its ROI setting {roi!r} is left out")
            del st["models"][arch]
            removed_models.add(arch)
            continue
        if roi not in cfg["rois"]:
            continue  # a config error, reported by config_problems
        keep = [s for s in sets if s in phases or (s == "all" and len(phases) > 1) or (s == "stack" and stack_ok)]
        gone = [s for s in sets if s not in keep]
        if not keep and all(s in PHASE_NAMES for s in sets):
            keep = [next(p for p in PHASE_PREFERENCE if p in phases)]
            notes.append(Problem("warning", f"training.studies.{sname}.models.{arch}: phases {sets} are not in "
                                            f"the cohort; trains on {keep[0]} instead",
                                 "pin the phase with replace: [training.studies] in your config"))
        elif gone:
            why = {"all": "needs two or more phases", "stack": "needs two or more stacked phases"}
            _skip(notes, f"training.studies.{sname}.models.{arch}: phase set(s) " + ", ".join(
                f"{s} ({why.get(s, 'not in the cohort')})" for s in gone) + " left out")
        if not keep:
            del st["models"][arch]
            removed_models.add(arch)
            continue
        if isinstance(spec, dict):
            spec["phases"] = keep
        else:
            st["models"][arch] = keep
    return removed_models


def _derive_variables(cfg: dict, facts: dict, notes: list[Problem]) -> None:
    """``baseline.variables``: the clinical columns the cohort has (the others recorded as missing)."""
    cols = set(facts.get("columns", []))
    base = cfg["baseline"]
    gone = [v["name"] for v in base["variables"] if v["name"] not in cols]
    if gone:
        _skip(notes, f"baseline.variables: the cohort has no column {', '.join(gone)}; the baseline tables leave "
                     "them out (and say so)", "add the columns to the sheet, or name the ones it has in "
                     "baseline.variables")
    base["missing_variables"] = gone
    base["variables"] = [v for v in base["variables"] if v["name"] in cols]


def _derive_radiomics(cfg: dict, outlined: dict, removed_rois: set[str], notes: list[Problem]) -> None:
    """``radiomics``: its ROI setting (another outline one when its own is left out) and phase, or left out."""
    rad = cfg.get("radiomics", {})
    if not rad.get("enabled"):
        return
    if rad["roi"] in removed_rois:
        alt = next((n for n, r in cfg["rois"].items() if set(roi_formats(r)) & set(OUTLINE_FORMATS)), None)
        if alt:
            notes.append(Problem("warning", f"radiomics.roi {rad['roi']!r} is left out (no patient has its "
                                            f"annotation); radiomics uses ROI setting {alt!r}"))
            rad["roi"] = alt
        else:
            _skip(notes, "radiomics: no ROI setting reads a tumour outline; radiomics is left out")
            rad["enabled"] = False
    if rad.get("enabled") and not (outlined.get(rad["phase"]) or 0):
        _skip(notes, f"radiomics: no patient has a tumour outline on phase {rad['phase']}; radiomics is left out")
        rad["enabled"] = False


def _derive_fusion(cfg: dict, facts: dict, notes: list[Problem]) -> None:
    """``fusion``: its deep cell when still trained, the clinical columns the cohort has, or left out."""
    from ccgrade.config.matrix import study_models

    rad, fus = cfg.get("radiomics", {}), cfg.get("fusion", {})
    if not fus.get("enabled"):
        return
    cols = set(facts.get("columns", []))
    studies = cfg.get("training", {}).get("studies", {})
    deep = fus.get("deep")
    if deep:
        st = studies.get(deep["study"])
        ok = st is not None and deep["arch"] in st["models"] and deep["phases"] in dict(
            (a, s) for a, _, s in study_models(st)).get(deep["arch"], [])
        if not ok:
            _skip(notes, f"fusion.deep: the cell {deep['study']}/{deep['arch']}/{deep['phases']} is left out; the "
                         "fusion has no deep block (radiomics and clinical only)")
            fus["deep"] = None
    lost = [c for c in fus.get("clinical", []) if c not in cols]
    if lost:
        _skip(notes, f"fusion.clinical: the cohort has no column {', '.join(lost)}; the clinical block leaves them out")
    names = {v["name"] for v in cfg["baseline"]["variables"]}
    fus["clinical"] = [c for c in fus.get("clinical", []) if c in cols and c in names]
    if not (rad.get("enabled") or fus.get("deep") or fus["clinical"]):
        _skip(notes, "fusion: no radiomics, deep or clinical block is left; the fusion is left out")
        fus["enabled"] = False
