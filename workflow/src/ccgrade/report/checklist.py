"""The reporting checklist (issue 17 item 4): CLAIM and TRIPOD+AI, each item answered from the run or marked
for the authors.

A study's run knows most of what these checklists ask: the data's source and flow with counts, the
reference standard, the splits and their sizes, the preprocessing, models, initialisation, training
settings and selection rule, the metrics with their CIs, calibration, external validation, the failure
analysis, the software versions and the code's commit. ``build`` reads those from the run's own files (the
config as the jobs saw it, ``provenance.json``, the cohort, exclusions, phase status, crop manifest,
splits, the cells' ``meta.json`` and predictions, the failure and fusion tables) and answers every item it
can; what only the authors know (title, clinical rationale, annotators' qualifications, ethics, funding,
limitations) is marked ``to be completed by the authors``, with what the run can add as a hint. Every
answer is one of three statuses:

- ``filled``: answered from this run (the answer names the files it comes from);
- ``partly``: the run's part answered, the rest for the authors (said in the answer);
- ``authors``: to be completed by the authors.

CLAIM items are numbered as its 42-item list (Mongan, Moy & Kahn, Radiol Artif Intell 2020), in the 2024
update's terms (Tejani et al., 2024: "reference standard" for "ground truth"); TRIPOD+AI (Collins et al.,
BMJ 2024) items are named by topic and point to the CLAIM answer where the two ask the same. Check the
numbering against the form the journal asks for. The answers hold counts, settings and file names, never a
patient's identifier.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade import paths, samplesize
from ccgrade.config import rois
from ccgrade.evaluate import studies as study_kinds
from ccgrade.outputs import atomic_path, markdown_table, read_table, write_text

AUTHORS = "to be completed by the authors"
STATUS_TEXT = {"filled": "filled from the run", "partly": "partly filled (authors complete)", "authors": AUTHORS}


@dataclass(frozen=True)
class Item:
    guideline: str  # CLAIM | TRIPOD+AI
    number: str  # CLAIM: 1-42; TRIPOD+AI: "" (named by topic)
    section: str
    topic: str
    answer: str | None = None  # the Run method that answers it; None: the authors' (with ``hint``)
    hint: str = ""


def _c(n: int, section: str, topic: str, answer: str | None = None, hint: str = "") -> Item:
    return Item("CLAIM", str(n), section, topic, answer, hint)


def _t(section: str, topic: str, answer: str | None = None, hint: str = "") -> Item:
    return Item("TRIPOD+AI", "", section, topic, answer, hint)


CLAIM: tuple[Item, ...] = (
    _c(1, "Title/Abstract", "Identification as a study of AI methodology, naming the category of technology",
       "title"),
    _c(2, "Title/Abstract", "Structured summary of design, methods, results and conclusions", None,
       "the results: item 36"),
    _c(3, "Introduction", "Scientific and clinical background, the intended use and clinical role of the AI approach",
       "background"),
    _c(4, "Introduction", "Study objectives and hypotheses"),
    _c(5, "Methods: study design", "Prospective or retrospective study", None,
       "ccgrade analyses an existing cohort: retrospective unless collected for the study"),
    _c(6, "Methods: study design", "Study goal (model creation, exploratory, feasibility, non-inferiority)", "goal"),
    _c(7, "Methods: data", "Data sources", "sources"),
    _c(8, "Methods: data", "Eligibility criteria", "eligibility"),
    _c(9, "Methods: data", "Data preprocessing steps", "preprocessing"),
    _c(10, "Methods: data", "Selection of data subsets, if applicable", "subsets"),
    _c(11, "Methods: data", "Definitions of data elements, with references to common data elements", "elements"),
    _c(12, "Methods: data", "De-identification methods", "deidentification"),
    _c(13, "Methods: data", "How missing data were handled", "missing"),
    _c(14, "Methods: reference standard", "Definition of the reference standard, in detail enough to replicate",
       "reference"),
    _c(15, "Methods: reference standard", "Rationale for choosing the reference standard", None,
       "all four reproduced studies grade from the surgical specimen, low (I-II) vs high (III-IV)"),
    _c(16, "Methods: reference standard", "Source of reference standard annotations; qualifications and preparation "
       "of annotators", None, "who graded the specimens and who drew the tumour outlines"),
    _c(17, "Methods: reference standard", "Annotation tools", "annotation_tools"),
    _c(18, "Methods: reference standard", "Measurement of inter- and intrarater variability; methods to mitigate "
       "variability or resolve discrepancies", None, "ccgrade reads one annotation per patient and phase"),
    _c(19, "Methods: data partitions", "Intended sample size and how it was determined", "sample_size"),
    _c(20, "Methods: data partitions", "How data were assigned to partitions; specify proportions", "partitions"),
    _c(21, "Methods: data partitions", "Level at which partitions are disjoint (e.g., image, study, patient)",
       "disjoint"),
    _c(22, "Methods: model", "Detailed description of the model, including inputs, outputs and intermediate layers",
       "model"),
    _c(23, "Methods: model", "Software libraries, frameworks and packages", "software"),
    _c(24, "Methods: model", "Initialisation of model parameters", "initialisation"),
    _c(25, "Methods: training", "Details of training approach, including data augmentation, hyperparameters and "
       "number of models trained", "training"),
    _c(26, "Methods: training", "Method of selecting the final model", "selection"),
    _c(27, "Methods: training", "Ensembling techniques, if applicable", "ensembling"),
    _c(28, "Methods: evaluation", "Metrics of model performance", "metrics"),
    _c(29, "Methods: evaluation", "Statistical measures of significance and uncertainty (e.g., confidence intervals)",
       "statistics"),
    _c(30, "Methods: evaluation", "Robustness or sensitivity analysis", "robustness"),
    _c(31, "Methods: evaluation", "Methods for explainability or interpretability, and how they were validated",
       "explainability"),
    _c(32, "Methods: evaluation", "Validation or testing on external data", "external"),
    _c(33, "Results: data", "Flow of participants or cases, using a diagram to indicate inclusion and exclusion",
       "flow"),
    _c(34, "Results: data", "Demographic and clinical characteristics of cases in each partition", "characteristics"),
    _c(35, "Results: model performance", "Performance metrics for optimal model(s) on all data partitions",
       "all_partitions"),
    _c(36, "Results: model performance", "Estimates of diagnostic performance and their precision (such as 95% CIs)",
       "estimates"),
    _c(37, "Results: model performance", "Failure analysis of incorrectly classified cases", "failures"),
    _c(38, "Discussion", "Study limitations, including potential bias, statistical uncertainty and generalisability",
       None, "single-centre data is every reproduced study's main limitation: see item 32"),
    _c(39, "Discussion", "Implications for practice, including the intended use and clinical role"),
    _c(40, "Other information", "Registration number and name of registry"),
    _c(41, "Other information", "Where the full study protocol can be accessed", "protocol"),
    _c(42, "Other information", "Sources of funding and other support; role of funders"),
)

TRIPOD_AI: tuple[Item, ...] = (
    _t("Title/Abstract", "Title and abstract", None, "as CLAIM 1-2"),
    _t("Introduction", "Background, intended use and objectives", "background"),
    _t("Methods", "Data sources and dates", "sources"),
    _t("Methods", "Participants: eligibility, setting, treatments", "eligibility"),
    _t("Methods", "Data preparation", "preprocessing"),
    _t("Methods", "Outcome: definition, how and when assessed, blinding", "reference"),
    _t("Methods", "Predictors: definition and measurement", "predictors"),
    _t("Methods", "Sample size", "sample_size"),
    _t("Methods", "Missing data", "missing"),
    _t("Methods", "Analytical methods: model type, building, internal validation, performance measures",
       "analysis"),
    _t("Methods", "Class imbalance", "imbalance"),
    _t("Methods", "Fairness: performance across subgroups", "fairness"),
    _t("Methods", "Model output and how it is used (thresholds)", "output"),
    _t("Methods", "Differences between development and evaluation data", "differences"),
    _t("Open science", "Ethical approval and consent"),
    _t("Open science", "Funding and conflicts of interest"),
    _t("Open science", "Protocol and registration"),
    _t("Open science", "Data sharing", None, "the demo cohort is made up by ccgrade; a user's cohort stays with its owner"),
    _t("Open science", "Code sharing", "code"),
    _t("Open science", "Patient and public involvement"),
    _t("Results", "Participants: flow and characteristics", "flow"),
    _t("Results", "Model performance with CIs, in subgroups too", "estimates"),
    _t("Results", "Calibration", "calibration"),
    _t("Discussion", "Interpretation, limitations and usability of the model in its context", None,
       "as CLAIM 38-39"),
)


SETS = ("train", "val", "test")


def _in_order(d: dict) -> list[str]:
    """A split's keys as train, val, test, then the rest (JSON params arrive with sorted keys)."""
    return [k for k in SETS if k in d] + [k for k in d if k not in SETS]


def _num(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


class Run:
    """What the run's files say, read once; each answering method returns (status, answer)."""

    def __init__(self, config: dict, files: dict, studies: dict[str, dict]):
        self.cfg = config
        self.files = files
        self.studies = studies  # {study: {"kind": ..., "cells": [cell with dir, hp]}}
        self.cohort = self._table("cohort")
        self.exclusions = self._table("exclusions")
        self.phase_status = self._table("phase_status")
        self.manifest = self._table("manifest")
        self.series = self._table("series")
        self.splits = {Path(p).stem: json.loads(Path(p).read_text()) for p in files.get("splits", [])}
        self.provenance = json.loads(Path(files["provenance"]).read_text()) if files.get("provenance") else {}
        self._estimates: dict | None = None
        self._patients: dict[str, pd.DataFrame] = {}
        self._meta: dict[str, dict] = {}
        self._external: dict[str, pd.DataFrame] | None = None

    def _table(self, key: str) -> pd.DataFrame | None:
        p = self.files.get(key)
        if not p or not Path(p).exists():
            return None
        return read_table(p, keep_default_na=False) if key in ("exclusions", "phase_status", "manifest", "series") \
            else read_table(p)

    # ---------------------------------------------------------------------------------- helpers

    def source(self) -> str:
        return self.cfg["cohort"]["source"]

    def n(self) -> int:
        return 0 if self.cohort is None else len(self.cohort)

    def grade_mix(self) -> str:
        if self.cohort is None or "grade_group" not in self.cohort:
            return ""
        g = self.cohort["grade_group"].astype(str)
        return f"{int((g == 'high').sum())} high grade, {int((g == 'low').sum())} low grade"

    def cells(self, study: str) -> list[dict]:
        return self.studies[study]["cells"]

    def used_rois(self) -> list[str]:
        return list(dict.fromkeys(c["roi"] for s in self.studies for c in self.cells(s)))

    def meta(self, cell: dict) -> dict:
        """The cell's meta.json, read once ({} while untrained)."""
        d = cell["dir"]
        if d not in self._meta:
            p = Path(d) / "meta.json"
            self._meta[d] = json.loads(p.read_text()) if p.exists() else {}
        return self._meta[d]

    def models_of(self, study: str) -> str:
        by: dict[tuple, list[str]] = {}
        for c in self.cells(study):
            by.setdefault((c["arch"], c["roi"]), [])
            if c["phases"] not in by[(c["arch"], c["roi"])]:
                by[(c["arch"], c["roi"])].append(c["phases"])
        return "; ".join(f"{a} on {', '.join(ph)} ({r} crops)" for (a, r), ph in by.items())

    def split_users(self, name: str) -> list[str]:
        """The studies (and the fusion) that train on split scheme ``name`` (the config the jobs ran with), each
        with the folds it trains where the split has several (the matrix trains one fold of a leave-one-centre-out
        split, the fusion the first fold of its split)."""
        st = self.cfg.get("training", {}).get("studies", {})
        several = len(self.splits.get(name, {}).get("folds", [])) > 1

        def user(who: str, folds: list) -> str:
            return f"{who} {'fold' if len(folds) == 1 else 'folds'} {', '.join(map(str, folds))}" if several else who

        users = [user(s, sorted({c["fold"] for c in self.cells(s)})) for s in self.studies
                 if (st.get(s) or {}).get("scheme") == name]
        if self.files.get("fusion") and (self.cfg.get("fusion") or {}).get("scheme") == name:
            users.append(user("fusion", [0]))
        return users

    def stratified_by(self, name: str, d: dict) -> list[str] | None:
        """The columns split ``name`` was stratified by, as ``preprocess.splits`` deals it: the scheme's
        ``stratify`` (default grade_group and centre), each only where every patient of the split has it;
        [] for leave-one-centre-out (whole centres held out); None when the cohort is not at hand to check."""
        if d.get("kind") not in ("holdout", "kfold"):
            return []
        by = list((self.cfg["splits"]["schemes"].get(name) or {}).get("stratify", ["grade_group", "centre"]))
        if self.cohort is None:
            return None
        ids = {str(p) for f in d.get("folds", [])[:1] for v in f.values() if isinstance(v, list) for p in v}
        c = self.cohort[self.cohort["patient_id"].astype(str).isin(ids)]
        return [b for b in by if b in c and len(c) and c[b].notna().all()]

    def centre_folds(self, d: dict) -> str:
        """A leave-one-centre-out split's folds: each held-out centre with its test patients' grade mix."""
        g = (dict(zip(self.cohort["patient_id"].astype(str), self.cohort["grade_group"].astype(str)))
             if self.cohort is not None and "grade_group" in self.cohort else {})
        out = []
        for i, f in enumerate(d.get("folds", [])):
            test = [str(p) for p in f.get("test", [])]
            hi = sum(g.get(p) == "high" for p in test)
            out.append(f"fold {i} tests centre {f.get('centre', '?')} ({len(test)} patients" +
                       (f", {hi} high grade)" if g else ")"))
        return ", ".join(out)

    def external_tables(self) -> dict[str, pd.DataFrame]:
        """The studies' external-validation tables that exist and hold rows, read once."""
        if self._external is None:
            paths_ = {s: Path(p) for s, p in (self.files.get("external") or {}).items() if Path(p).exists()}
            self._external = {s: t for s, p in paths_.items() if len(t := read_table(p))}
        return self._external

    def fusion_table(self) -> pd.DataFrame | None:
        p = self.files.get("fusion")
        return read_table(p) if p and Path(p).exists() else None

    # ---------------------------------------------------------------------------------- answers

    def title(self):
        archs = sorted({c["arch"] for s in self.studies for c in self.cells(s)})
        return "partly", (f"Deep learning: convolutional neural networks ({', '.join(archs)}) classifying clear cell "
                          f"RCC grade (low I-II vs high III-IV) from contrast CT. The title itself: {AUTHORS}.")

    def background(self):
        return "partly", ("Intended use (as each model bundle's metadata states): research on pre-operative, "
                          "non-invasive grading of clear cell RCC from multiphase CT; not for clinical decisions. "
                          f"Clinical background and role: {AUTHORS}.")

    def goal(self):
        kinds = {self.studies[s]["kind"] for s in self.studies}
        ext = (f" and external validation on centre {(self.cfg.get('external') or {}).get('name', '')}"
               if self.external_tables() else "")
        return "partly", (f"Model creation with internal validation{ext}, reproducing the procedures of "
                          f"{', '.join(sorted(kinds)) or 'no study'} (ccgrade's study kinds) on this cohort. "
                          f"Feasibility or other goals: {AUTHORS}.")

    def sources(self):
        src = self.source()
        what = {"demo": "the demo cohort written by ccgrade (real DICOM files of made-up phantom patients; no "
                        "patient data)",
                "kits": "the KiTS cohort (public, CC BY-NC-SA)",
                "sheet": "the study's cohort sheet (DICOM folders, tumour annotations, clinical columns)"}.get(src, src)
        parts = [f"{what}: {self.n()} patients"]
        if self.cohort is not None and "centre" in self.cohort:
            cen = self.cohort["centre"].astype(str).value_counts().sort_index()
            parts.append("centres " + ", ".join(f"{k} ({v})" for k, v in cen.items()))
        if self.series is not None and len(self.series):
            s = self.series
            for col, name in (("manufacturer", "manufacturers"), ("kernel", "kernels")):
                if col in s:
                    vals = sorted({str(v) for v in s[col] if str(v)})
                    if vals:
                        parts.append(f"{name}: {', '.join(vals[:6])}{' ...' if len(vals) > 6 else ''}")
            parts.append(f"{len(s)} CT series indexed ({paths.SERIES_TABLE})")
        dates = ("Acquisition dates are not kept in results/ (they identify patients); the period of recruitment and "
                 f"the institutions: {AUTHORS}.")
        return "partly", "; ".join(parts) + ". " + dates

    def eligibility(self):
        need = self.cfg["splits"]["require_phases"]
        txt = (f"Patients with a grade (grade system {self.cfg['cohort']['grade_system']}) and an annotated tumour; "
               f"the splits require the phases {', '.join(need) if need else '(none)'}")
        if self.exclusions is not None and len(self.exclusions):
            by = self.exclusions.groupby("stage")["patient_id"].nunique()
            txt += "; excluded or left out, by stage: " + ", ".join(f"{k} {v} patient(s)" for k, v in by.items())
            txt += " (each with its reason: results/tables/exclusions.csv)"
        else:
            txt += "; no exclusion"
        return "partly", txt + f". Clinical inclusion criteria (histology, surgery): {AUTHORS}."

    def preprocessing(self):
        ing = self.cfg["ingest"]["reconstruction"]
        parts = [f"DICOM to HU volumes (rescale slope/intercept applied, slices sorted along the normal; of several "
                 f"reconstructions of one phase the one nearest {ing['thickness_mm']} mm, avoiding kernels "
                 f"{', '.join(ing['avoid_kernels'])})"]
        for r in self.used_rois():
            roi = self.cfg["rois"][r]
            w = self.cfg["windows"][roi["window"]]
            win = "per-crop z-score" if w.get("zscore") else f"window level {w['level']} / width {w['width']} HU to [0, 1]"
            geo = rois.describe(roi)
            three_d = roi["kind"] in rois.REGISTRY and rois.REGISTRY[roi["kind"]].dims == 3
            size = f"{roi['size']}^3" if three_d else f"{roi['size']}x{roi['size']} px"
            parts.append(f"{r}: {geo}, {win}, resized to {size}")
        stack = self.cfg["stack"]["phases"]
        if stack and any(c["phases"] == "stack" for s in self.studies for c in self.cells(s)):
            parts.append(f"stack: phases {', '.join(stack)} as channels on the first one's grid")
        return "filled", "; ".join(parts) + " (config rois/windows; results/crops/manifest.tsv per crop)."

    def subsets(self):
        parts = [f"{s}: {self.models_of(s)}" for s in self.studies]
        return "filled", f"Phases of the cohort: {', '.join(self.cfg['phases'])}. Per study: " + "; ".join(parts) + "."

    def elements(self):
        hi = self.cfg["cohort"]["high_grade_from"]
        var = [f"{v['name']} ({v.get('label', v['name'])}{', ' + v['unit'] if v.get('unit') else ''}; {v['type']})"
               for v in self.cfg["baseline"]["variables"] if self.cohort is not None and v["name"] in self.cohort]
        return "partly", (f"grade_group: high when grade >= {hi}, else low; clinical columns: "
                          f"{', '.join(var) or 'none'}. References to common data elements: {AUTHORS}.")

    def deidentification(self):
        mode = self.cfg["privacy"]["mode"]
        if mode == "pseudonymise":
            return "filled", ("DICOM UIDs replaced by keyed pseudonyms (2.25.<n>, the key outside results/), files named "
                              "by role and index, the patient's DICOM identifiers never written; every file under "
                              "results/ is scanned for the cohort's identifying values and the run fails on any hit "
                              "(results/privacy_scan.tsv).")
        return "partly", (f"privacy.mode {mode}: original UIDs kept (a local quality-control run); the results are "
                          f"not de-identified by ccgrade. The de-identification of the source data: {AUTHORS}.")

    def missing(self):
        parts = []
        need = self.cfg["splits"]["require_phases"]
        left = {s: len(d.get("excluded", [])) for s, d in self.splits.items()}
        parts.append(f"patients missing a required phase ({', '.join(need) or 'none required'}) are left out of the "
                     f"splits, not imputed (left out per scheme: "
                     + ", ".join(f"{k} {v}" for k, v in left.items()) + ")")
        if self.cohort is not None:
            miss = {v["name"]: int(self.cohort[v["name"]].isna().sum()) for v in self.cfg["baseline"]["variables"]
                    if v["name"] in self.cohort}
            miss = {k: v for k, v in miss.items() if v}
            parts.append("missing clinical values: " + (", ".join(f"{k} {v}" for k, v in miss.items()) or "none")
                         + " (baseline tests use the available cases)")
        fusion = self.fusion_missing()
        if fusion:
            parts.append(fusion)
        return "filled", "; ".join(parts) + "."

    def fusion_missing(self) -> str:
        """What the fusion did with missing clinical values, read from its model table's ``imputed_*`` columns."""
        from ccgrade.fusion.report import IMPUTED_PREFIX, SET_NAMES

        t, p = self.fusion_table(), self.files.get("fusion")
        if t is None:
            return ""
        if "set" not in t or t.empty:
            return f"the fusion models were not fitted in this run ({p} says why)"
        cols = [c for c in t.columns if c.startswith(IMPUTED_PREFIX)]
        if not cols:
            return f"the fusion models use no clinical variable ({p})"
        per = t.groupby("set", sort=False)[cols].max()
        counts = "; ".join(f"{SET_NAMES.get(st, st)} " + ", ".join(
            f"{c.removeprefix(IMPUTED_PREFIX)} {int(n) if n == n else 0}" for c, n in row.items())
            for st, row in per.iterrows())
        return ("the fusion's clinical and combined models keep patients with missing clinical values and impute them "
                "from the training patients (continuous: median; categorical: a '(missing)' level; the footnote of "
                f"{Path(p).with_suffix('.md').name}), patients imputed per set: {counts} ({p}); only patients "
                f"without a feature block are left out ({paths.FUSION['left_out']})")

    def reference(self):
        c = self.cfg["cohort"]
        sys_ = {"isup": "WHO/ISUP", "fuhrman": "Fuhrman"}.get(c["grade_system"], c["grade_system"])
        return "partly", (f"Pathological {sys_} grade 1-4, dichotomised: low (grade < {c['high_grade_from']}) vs high; "
                          f"{self.grade_mix() or 'no grades'}. How and by whom the specimens were graded, and "
                          f"blinding to the images: {AUTHORS}.")

    def annotation_tools(self):
        if self.manifest is None or "source" not in self.manifest:
            return "authors", AUTHORS
        ok = self.manifest[self.manifest["status"] == "ok"]
        by = ok.groupby("source")["patient_id"].nunique()
        files = ", ".join(f"{k} ({v} patients)" for k, v in by.items() if k)
        return "partly", (f"Annotation files read: {files or 'none'} ({paths.CROP_MANIFEST}). The tools and "
                          f"software versions that drew them: {AUTHORS}.")

    def fusion_parameters(self) -> int:
        """The combined fusion model's parameters: a score per block, a term per continuous clinical variable and
        levels - 1 per categorical one (its levels in the cohort), as Riley et al. count candidate parameters."""
        fus = self.cfg.get("fusion", {})
        p = int(bool(self.cfg.get("radiomics", {}).get("enabled"))) + int(bool(fus.get("deep")))
        types = {v["name"]: v.get("type", "continuous") for v in self.cfg.get("baseline", {}).get("variables", [])}
        for name in fus.get("clinical") or []:
            if types.get(name) == "categorical" and self.cohort is not None and name in self.cohort:
                p += max(self.cohort[name].replace("", np.nan).dropna().nunique() - 1, 1)
            else:
                p += 1
        return p

    def sample_size(self):
        g = self.cohort["grade_group"].astype(str) if self.cohort is not None and "grade_group" in self.cohort else None
        n_high, n = (int((g == "high").sum()), int(g.isin(["low", "high"]).sum())) if g is not None else (0, 0)
        if not self.cfg.get("fusion", {}).get("enabled") or not 0 < n_high < n:
            return "authors", (f"{AUTHORS} (no logistic model is fitted in this run, so no Riley et al. criteria are "
                               f"computed; the run has {self.n()} patients, {self.grade_mix()}).")
        p = self.fusion_parameters()
        r = samplesize.riley_binary(n_high / n, p)
        c = r["criteria"]
        verdict = "meets" if n >= r["n"] else "falls short of"
        return "partly", (
            f"Riley et al. (BMJ 2020) minimum for the fusion's combined logistic model ({p} parameters: the block scores "
            f"and clinical terms), outcome proportion {n_high}/{n}, anticipated Cox-Snell R² {r['r2_cs']:.3f} (15% of "
            f"its largest possible, {r['max_r2_cs']:.3f}: no prior estimate): {r['n']} patients ({r['events']} high "
            f"grade; criteria: shrinkage {c['shrinkage']}, optimism {c['optimism']}, overall risk {c['overall_risk']}"
            f"). This cohort's {n} graded patients {verdict} it. The CNNs have no such criterion; the pre-flight warns "
            f"when a split's test patients are too few for a usable interval (statistics.max_ci_width). The intended "
            f"size and its rationale: {AUTHORS}.")

    def partitions(self):
        parts = []
        for name, d in self.splits.items():
            sch = self.cfg["splits"]["schemes"].get(name, {})
            if not d.get("folds"):
                parts.append(f"{name}: {d.get('note') or 'no folds'}")
                continue
            fr = sch.get("fractions", {})
            how = {"holdout": f"hold-out {':'.join(_in_order(fr))} {':'.join(str(fr[k]) for k in _in_order(fr))}",
                   "kfold": f"{sch.get('k')}-fold cross-validation",
                   "leave_one_centre_out": "leave one centre out"}.get(d["kind"], d["kind"])
            sizes = "; ".join(", ".join(f"{k} {len(f[k])}" for k in _in_order(f) if isinstance(f[k], list))
                              for f in d["folds"][:5])
            strat = self.stratified_by(name, d)
            how += (f", stratified by {', '.join(strat)}" if strat else ", not stratified" if strat == [] else "")
            if d["kind"] == "leave_one_centre_out":
                how += f" (whole centres held out: {self.centre_folds(d)})"
            parts.append(f"{name}: {how}, patient level, seed {d['seed']} ({sizes})")
        return "filled", "; ".join(parts) + f" ({paths.SPLIT_JSON.format(scheme='<scheme>')})."

    def disjoint(self):
        bad = []
        for name, d in self.splits.items():
            for i, f in enumerate(d.get("folds", [])):
                sets = {k: set(map(str, v)) for k, v in f.items() if isinstance(v, list)}
                keys = list(sets)
                for a in range(len(keys)):
                    for b in range(a + 1, len(keys)):
                        if sets[keys[a]] & sets[keys[b]]:
                            bad.append(f"{name} fold {i}: {keys[a]} and {keys[b]}")
        if bad:
            return "filled", "NOT disjoint: a patient is in two sets of " + "; ".join(bad) + "."
        return "filled", ("Patient level: all images, slices and phases of a patient are in one set; checked on this "
                          "run's splits (no patient in two sets of any fold).")

    def model(self):
        parts = []
        for s in self.studies:
            shapes = {tuple(self.meta(c).get("input_shape", [])) for c in self.cells(s)} - {()}
            parts.append(f"{s}: {self.models_of(s)}; inputs (channels, pixels) {', '.join(map(str, sorted(shapes))) or 'n/a'}")
        return "filled", ("torchvision architectures (ResNet, SE-ResNet, 3D ResNet) with a two-class head; output "
                          "P(high grade) by softmax. " + "; ".join(parts) + ".")

    def software(self):
        v = self.provenance.get("packages", {})
        keep = ["ccgrade", "python", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "statsmodels",
                "pydicom", "SimpleITK", "pyradiomics", "snakemake"]
        py = self.provenance.get("python", "")
        vals = [f"python {py}"] if py else []
        vals += [f"{k} {v[k]}" for k in keep if k in v and v[k] != "not installed"]
        return "filled", ", ".join(vals) + " (results/provenance.json)."

    def initialisation(self):
        parts = []
        for s in self.studies:
            hp = {json.dumps({k: c["hp"].get(k) for k in ("pretrained", "freeze_stages")}, sort_keys=True)
                  for c in self.cells(s)}
            desc = []
            for h in sorted(hp):
                h = json.loads(h)
                pre = "ImageNet weights (torchvision)" if h["pretrained"] == "imagenet" else "random (PyTorch default)"
                frz = f", stem and first {h['freeze_stages'] - 1} stages frozen" if h.get("freeze_stages") else ""
                desc.append(pre + frz)
            parts.append(f"{s}: {'; '.join(desc)}")
        return "filled", "; ".join(parts) + f"; seeds per study: " + ", ".join(
            f"{s} {sorted({c['seed'] for c in self.cells(s)})}" for s in self.studies) + "."

    def training(self):
        parts = []
        for s in self.studies:
            hps = []
            for c in self.cells(s):
                h = c["hp"]
                aug = h.get("augment") or {}
                txt = (f"{h.get('optimizer')} lr {h.get('lr')}, batch {h.get('batch')}, {h.get('epochs')} epochs, "
                       f"weight decay {h.get('weight_decay')}, class weights {h.get('class_weight')}, augmentation "
                       + (", ".join(f"{k} {v}" for k, v in aug.items()) or "none"))
                if txt not in hps:
                    hps.append(txt)
            parts.append(f"{s} ({len(self.cells(s))} models trained): " + " | ".join(hps))
        return "filled", "; ".join(parts) + " (each cell's meta.json)."

    def selection(self):
        sel = sorted({self.meta(c).get("selection", "") for s in self.studies for c in self.cells(s)} - {""})
        mode = self.cfg["statistics"]["mode"]
        rule = ("a reference phase or ROI setting is chosen on validation patients" if mode == "honest" else
                "paper mode: the 'best' model is picked on the test set, as the papers did (footnoted)")
        return "filled", (f"Epoch: {'; '.join(sel) or 'no model trained yet'}. Between models: {rule}; test patients "
                          "are used only for the final estimates." if mode == "honest" else
                          f"Epoch: {'; '.join(sel)}. Between models: {rule}.")

    def ensembling(self):
        parts = []
        for s in self.studies:
            members: dict[tuple, tuple[set, set]] = {}
            for c in self.cells(s):
                f, sd = members.setdefault((c["arch"], c["roi"], c["phases"], c["variant"]), (set(), set()))
                f.add(c["fold"])
                sd.add(c["seed"])
            folds = max((len(f) for f, _ in members.values()), default=0)
            seeds = max((len(sd) for _, sd in members.values()), default=0)
            bits = ([f"{folds} fold models per model, pooled out of fold (each test patient judged by the fold model "
                     "that did not see it), not averaged"] if folds > 1 else [])
            bits += [f"{seeds} seeds per model, one row each and a summary row of their estimates (mean ± SD); "
                     "their predictions are not averaged"] if seeds > 1 else []
            parts.append(f"{s}: " + ("; ".join(bits) or "one model per row (one fold, one seed)"))
        text = "Study tables (the cells in the matrix): " + ("; ".join(parts) or "no study")
        ext = {s: int(t["n_members"].max()) for s, t in self.external_tables().items() if "n_members" in t}
        if any(n > 1 for n in ext.values()):
            text += (". External validation: each model's P(high) averaged over its members (its fold and seed "
                     "models) per patient: " + ", ".join(f"{s} up to {n} members ({paths.external_outputs(s)['table']})"
                                                          for s, n in ext.items()))
        elif ext:
            text += ". External validation: one member per model, nothing averaged"
        return "filled", text + ". " + self.predict_ensemble()

    def predict_ensemble(self) -> str:
        """What ``snakemake predict`` (a separate target; its files are not this checklist's) is configured to
        average: the folds of ``predict.model``."""
        spec = (self.cfg.get("predict") or {}).get("model") or {}
        study, folds = spec.get("study"), spec.get("folds", "all")
        if not study or study not in self.studies:
            return "New patients (snakemake predict): no configured model among this run's studies."
        k = len({c["fold"] for c in self.cells(study)})
        n = k if folds == "all" else len(folds)
        how = f"P(high) averaged over {n} fold models" if n > 1 else "one fold model, nothing averaged"
        return (f"New patients (snakemake predict, configured predict.model: study {study}, folds "
                f"{folds if folds == 'all' else ', '.join(map(str, folds))}): {how}.")

    def metrics(self):
        return "filled", ("AUC; accuracy, precision, sensitivity, specificity and F1 per class (Cui); sensitivity and "
                          "specificity at P(high) >= 0.5; per image or slice and per patient (mean P over its images; "
                          "Li's 2D rule: more than 3 slices); the fusion's Brier score, calibration slope and intercept, "
                          "Hosmer-Lemeshow, decision curves; per study, decision curves with bootstrap intervals and net "
                          "interventions avoided, and the smoothed calibration curve with its ICI, E50, E90 and Emax, "
                          "on the test patients.")

    def auc_methods(self) -> tuple[str, str]:
        """The AUC interval and the paired AUC test the run's tables show, in words, by ``statistics.mode``
        (``tables.auc_cis``, ``tables.paired_test``)."""
        from ccgrade.evaluate.tables import PAIRED_N_PERM, stats_options

        if stats_options(self.cfg["statistics"])["mode"] == "paper":
            return "DeLong's Wald interval (paper mode)", "DeLong's test of correlated AUCs (paper mode)"
        return ("Newcombe's score interval", "a within-patient permutation test of the two models' ranks (exact up to "
                f"{PAIRED_N_PERM:,} swap patterns, otherwise {PAIRED_N_PERM:,} random ones)")

    def statistics(self):
        from ccgrade.evaluate.tables import stats_options

        s = stats_options(self.cfg["statistics"])
        ci, test = self.auc_methods()
        paper = s["mode"] == "paper"
        clus = ("paper mode: images treated as independent for the AUC, as the papers did (footnoted)" if paper else
                "image- and slice-level AUC CIs with Obuchowski's patient-clustered design effect and tests that "
                "permute a patient's images together")
        beside = ("" if paper else "DeLong's Wald interval and ") + f"a patient bootstrap ({s['n_boot']} resamples)"
        return "filled", (f"AUC 95% CIs by {ci}, with {beside} beside it in the CSVs; {clus}; Wilson CIs of "
                          "sensitivity, specificity, accuracy, PPV and NPV (at image level on the patient-clustered "
                          "effective sample size), F1 by Wilson's interval of the Jaccard index mapped to F1 (chosen "
                          f"by its coverage, benchmarks/bench_f1_coverage.py); AUCs of two models compared by {test}; external minus "
                          "internal AUC by a z test of two independent DeLong variances; McNemar on sensitivity and "
                          "specificity, exact binomial (Clopper-Pearson) CIs of error rates; families of tests adjusted "
                          f"by {', '.join(s['adjust']) or 'none'}; baseline tables: normality check, then t-test or "
                          "Mann-Whitney; chi-square or Fisher.")

    def robustness(self):
        parts = []
        for s in self.studies:
            cells = self.cells(s)
            seeds = {c["seed"] for c in cells}
            variants = {c["variant"] for c in cells}
            rois = {c["roi"] for c in cells}
            bits = []
            if len(seeds) > 1:
                bits.append(f"{len(seeds)} seeds")
            if len(variants) > 1:
                bits.append(f"variants {', '.join(sorted(variants))}")
            if len(rois) > 1:
                bits.append(f"ROI settings {', '.join(sorted(rois))}")
            if bits:
                parts.append(f"{s}: " + ", ".join(bits))
        loco = [k for k, d in self.splits.items() if d.get("kind") == "leave_one_centre_out" and d.get("folds")]
        if loco:
            parts.append("leave-one-centre-out split available (" + ", ".join(loco) + ")")
        if not parts:
            return "authors", f"{AUTHORS} (this run has one seed, variant and ROI setting per study)."
        return "filled", "; ".join(parts) + "."

    def explainability(self):
        kinds = {s: study_kinds.REGISTRY.get(self.studies[s]["kind"]) for s in self.studies}
        figs = [k.heatmaps.paths(s)["heatmaps"] for s, k in kinds.items() if k is not None and k.heatmaps]
        figs += [study_kinds.failure_outputs(s)["failure_montage"] for s in self.studies]
        return "partly", ("Grad-CAM of the high-grade class on test patients (" + ", ".join(figs) + "). Their "
                          f"validation (e.g. a radiologist's reading of the maps): {AUTHORS}.")

    def external(self):
        tables = {s: Path(p) for s, p in (self.files.get("external") or {}).items() if Path(p).exists()}
        if not tables:
            loco = [f"{', '.join(self.split_users(k))} on split {k} ({self.centre_folds(d)})" for k, d in self.splits.items()
                    if d.get("kind") == "leave_one_centre_out" and d.get("folds") and self.split_users(k)]
            if loco:
                return "filled", ("No external cohort; internal-external validation by leaving one centre out: "
                                  + "; ".join(loco) + " (the trained folds: CLAIM 20).")
            return "filled", ("Not performed: the run has no external cohort (internal validation only; single-centre "
                              "data is the main limitation the reproduced studies name).")
        name = (self.cfg.get("external") or {}).get("name", "")
        parts = []
        for s, p in tables.items():
            t = read_table(p)
            if t.empty:
                continue
            n, hi = int(t["n_external"].max()), int(t["n_high"].max()) if "n_high" in t else 0
            auc = t["auc"].dropna() if "auc" in t else pd.Series(dtype=float)
            d = t["auc_difference"].dropna() if "auc_difference" in t else pd.Series(dtype=float)
            bit = f"{s}: {len(t)} model(s) on {n} patients ({hi} high grade)"
            if len(auc):
                bit += f", external AUC {auc.min():.2f}-{auc.max():.2f}"
            if len(d):
                bit += f", external minus internal {d.min():+.2f} to {d.max():+.2f}"
            parts.append(bit + f" ({paths.external_outputs(s)['table']})")
        return "filled", (f"External centre {name}: every trained model evaluated unchanged (frozen weights, "
                          f"preprocessing and threshold 0.5), with AUC CIs by {self.auc_methods()[0]}, sensitivity "
                          "and specificity, calibration slope and intercept, decision curves and the external-vs-"
                          "internal AUC test (z test of two independent DeLong variances); "
                          + "; ".join(parts) + ".")

    def flow(self):
        parts = [f"{self.n()} patients in the analysis cohort"]
        if self.phase_status is not None and len(self.phase_status):
            ok = self.phase_status[self.phase_status["status"] == "ok"]
            parts.append(f"{ok['patient_id'].nunique()} with at least one usable phase; per phase: "
                         + ", ".join(f"{ph} {n}" for ph, n in ok.groupby("phase")["patient_id"].nunique().items()))
        for name, d in self.splits.items():
            if d.get("folds"):
                parts.append(f"{d['n_patients']} in the {name} split ({len(d.get('excluded', []))} left out)")
        return "partly", ("; ".join(parts) + " (reasons: results/tables/exclusions.csv). The diagram, and patients "
                          f"screened before the cohort sheet: {AUTHORS}.")

    def characteristics(self):
        files = [f for f in self.files.get("baseline", [])]
        return "filled", ("Low vs high grade and training vs test: " + ", ".join(files) + " (normality-checked tests).")

    def all_partitions(self):
        return "filled", ("Training, validation and test sets (and every fold) in the study tables: "
                          + ", ".join(self.files.get("tables", [])) + ".")

    def _est(self) -> dict:
        if self._estimates is None:
            from ccgrade.evaluate.failures import analysed_cells, test_patients
            from ccgrade.evaluate.tables import binary_summary, stats_options

            self._estimates, self._patients = {}, {}
            opt = stats_options(self.cfg["statistics"])
            for s in self.studies:
                cells = analysed_cells(self.cells(s))
                cells = [c for c in cells if (Path(c["dir"]) / "predictions.tsv").exists()]
                pat = test_patients(cells) if cells else pd.DataFrame()
                r = binary_summary(pat["label"].to_numpy(), pat["prob_high"].to_numpy(), opt=opt,
                                   bootstrap=False) if len(pat) else {}
                self._patients[s] = pat
                self._estimates[s] = (cells, r)
        return self._estimates

    def estimates(self):
        from ccgrade.evaluate.tables import fmt

        parts = []
        for s, (cells, r) in self._est().items():
            if not r:
                parts.append(f"{s}: no trained model")
                continue
            c = cells[0]
            auc = (f"AUC {fmt(r['auc'])} (95% CI {fmt(r['auc_ci_low'])}-{fmt(r['auc_ci_high'])}, {r['ci_method']})"
                   if r["auc"] == r["auc"] else "AUC n/a (one grade group)")
            parts.append(f"{s} ({c['arch']} on {c['phases']}, {c['roi']}{', folds pooled' if len(cells) > 1 else ''}): "
                         f"{r['n']} test patients, {auc}, sensitivity {_num(r['sensitivity'])}, specificity "
                         f"{_num(r['specificity'])} at P(high) >= 0.5")
        return "filled", ("Per patient, the first model of each study: " + "; ".join(parts)
                          + ". Every model: the study tables.")

    def failures(self):
        parts = []
        for s in self.studies:
            p = Path(self.files.get("error_rates", {}).get(s, ""))
            if not p.is_file():
                continue
            r = read_table(p)
            allrow = r[r["subgroup"] == "all"]
            if len(allrow):
                a = allrow.iloc[0]
                parts.append(f"{s}: {int(a['errors'])} of {int(a['n'])} test patients misclassified, error rate "
                             f"{a['error_rate']:.2f} (exact 95% CI {a['ci_low']:.2f}-{a['ci_high']:.2f}); by subgroup "
                             f"in {p.as_posix()}")
        return ("filled" if parts else "authors"), ("; ".join(parts) + " (the most confident errors with crops and "
                                                    "Grad-CAM: results/figures/<study>_failures.png)." if parts else AUTHORS)

    def protocol(self):
        p = self.provenance
        commit, dirty = (p.get("git") or {}).get("commit", "unknown"), (p.get("git") or {}).get("dirty")
        return "partly", (f"Code: ccgrade at commit {commit}{' with edited files' if dirty else ''}; config SHA-256 "
                          f"{p.get('config_sha256', '?')[:16]}..., derived {p.get('derived_config_sha256', '?')[:16]}... "
                          f"(results/provenance.json). The protocol's location: {AUTHORS}.")

    def code(self):
        return self.protocol()

    def predictors(self):
        clin = [c for c in self.cfg["fusion"]["clinical"] if self.cohort is not None and c in self.cohort]
        return "filled", ("CT images of the named phases, cropped as in CLAIM 9 (the CNNs); for the fusion also "
                          f"pyradiomics features ({self.cfg['radiomics']['phase']} phase) and clinical columns "
                          f"{', '.join(clin) or 'none'}.")

    def analysis(self):
        return "filled", ("Model type: CLAIM 22; training and hyperparameters: CLAIM 25; model selection: CLAIM 26; "
                          "internal validation (patient-level splits): CLAIM 20-21; performance measures and their "
                          "uncertainty: CLAIM 28-29.")

    def imbalance(self):
        w = sorted({str(c["hp"].get("class_weight")) for s in self.studies for c in self.cells(s)})
        splits = []
        for name, d in self.splits.items():
            if not d.get("folds"):
                continue
            strat = self.stratified_by(name, d)
            users = self.split_users(name)
            if d["kind"] == "leave_one_centre_out":
                how = "whole centres held out, not stratified by grade group: " + self.centre_folds(d)
            elif strat is None:
                how = "stratification not checked (no cohort table)"
            else:
                how = f"stratified by {', '.join(strat)}" if strat else "not stratified (no complete stratify column)"
            splits.append(f"{name} ({d['kind']}{'; used by ' + ', '.join(users) if users else ''}): {how}")
        return "filled", (f"Class-weighted cross-entropy, class weights {' / '.join(w)} ('balanced': the inverse class "
                          "frequency of the training set); splits: " + ("; ".join(splits) or "none written")
                          + " (results/splits/<scheme>.json); no resampling.")

    def fairness(self):
        f = self.failures()
        return ("partly" if f[0] == "filled" else "authors"), (
            "Error rates by subgroup (size band, centre, sex, usable phases) with exact CIs, descriptive: "
            + (f[1] if f[0] == "filled" else "none") + f" Other subgroups and their interpretation: {AUTHORS}.")

    def output(self):
        return "filled", ("P(high grade) per image and per patient (the mean over its images); the call is high at "
                          "P >= 0.5 (the bundle's stated threshold).")

    def differences(self):
        cen = (self.cohort["centre"].dropna().astype(str).value_counts().sort_index()
               if self.cohort is not None and "centre" in self.cohort else pd.Series(dtype=int))
        where = (f"one cohort of {len(cen)} centres ({', '.join(f'{k} {v}' for k, v in cen.items())})" if len(cen) > 1
                 else f"one cohort{f' (centre {cen.index[0]})' if len(cen) else ''}")
        parts = [f"Development (training, validation) and internal test patients come from {where} and are "
                 "preprocessed identically (one crop job per patient, before the split)"]
        parts += [f"split {k} tests whole held-out centres ({self.centre_folds(d)}; used by "
                  f"{', '.join(self.split_users(k)) or 'no study'})" for k, d in self.splits.items()
                  if d.get("kind") == "leave_one_centre_out" and d.get("folds")]
        ext = self.external_tables()
        if ext:
            n = max((int(t["n_external"].max()) for t in ext.values() if "n_external" in t), default=0)
            parts.append(f"external centre {(self.cfg.get('external') or {}).get('name', '')}: {n} patients of another "
                         "centre, from their own scans, cropped by the preprocessing each model bundle records and "
                         "scored by the frozen models (CLAIM 32)")
        parts.append("new patients are cropped with the preprocessing the model bundle records")
        return "partly", ("; ".join(parts) + ". Differences in case mix, scanners and period between these sets: "
                          f"{AUTHORS} (the scanners per series: {paths.SERIES_TABLE}).")

    def calibration(self):
        from ccgrade.stats import calibration_slope_intercept

        def cal(r: dict) -> str:
            if r.get("cal_slope") != r.get("cal_slope"):
                return f"slope and intercept n/a ({r.get('cal_note') or 'not fitted'})"
            return f"slope {r['cal_slope']:.2f}, intercept {r['cal_intercept']:.2f}"

        parts = []
        for s, (cells, _) in self._est().items():
            pat = self._patients.get(s)
            if pat is not None and len(pat):
                parts.append(f"{s}: " + cal(calibration_slope_intercept(pat["label"].to_numpy(int),
                                                                        pat["prob_high"].to_numpy(float))))
        text = ("Logistic recalibration of each study's first model on its test patients (as CLAIM 36): "
                + ("; ".join(parts) or "no trained model"))
        p = self.files.get("fusion")
        if p and Path(p).exists():
            t = read_table(p)
            test = t[t["set"] == "test"] if "set" in t else t.iloc[0:0]
            if "cal_slope" in t and len(test):
                text += ("; the fusion models on test patients: "
                         + "; ".join(f"{r['model']}: {cal(r.to_dict())}" for _, r in test.iterrows())
                         + f" ({p}; calibration and decision curves: {paths.FUSION['dca']})")
            else:
                text += f"; the fusion models were not fitted in this run ({p} says why)"
        return "filled", text + ". Ideal: slope 1, intercept 0."


def build(config: dict, files: dict, studies: dict[str, dict]) -> pd.DataFrame:
    """Every item of both checklists with its status and answer."""
    run = Run(config, files, studies)
    rows = []
    for it in CLAIM + TRIPOD_AI:
        if it.answer is None:
            status, text = "authors", AUTHORS + (f" ({it.hint})" if it.hint else "")
        else:
            status, text = getattr(run, it.answer)()
            if it.hint and status == "authors":
                text += f" ({it.hint})"
        rows.append({"guideline": it.guideline, "item": it.number, "section": it.section, "topic": it.topic,
                     "status": status, "answer": text})
    return pd.DataFrame(rows)


def markdown(t: pd.DataFrame, commit: str = "") -> str:
    """The checklist as a manuscript supplement: one table per guideline, the statuses counted."""
    out = ["# Reporting checklist", "",
           "Generated by ccgrade from this run" + (f" (commit {commit})" if commit else "") + ". Each item is "
           f"*{STATUS_TEXT['filled']}*, *{STATUS_TEXT['partly']}* or *{AUTHORS}*. CLAIM items are numbered as its "
           "42-item list (Mongan et al., 2020) in the terms of the 2024 update; TRIPOD+AI (Collins et al., 2024) items "
           "are named by topic. Check the numbering against the form your journal asks for.", ""]
    for g, sub in t.groupby("guideline", sort=False):
        counts = sub["status"].value_counts()
        out += [f"## {g}", "", ", ".join(f"{int(counts.get(k, 0))} {v}" for k, v in STATUS_TEXT.items()), ""]
        view = sub.assign(status=sub["status"].map(STATUS_TEXT))
        cols = (["item"] if g == "CLAIM" else []) + ["section", "topic", "status", "answer"]
        out += [markdown_table(view[cols].rename(columns=str.capitalize)), ""]
    return "\n".join(out)


def write(t: pd.DataFrame, csv: str | Path, md: str | Path, commit: str = "") -> None:
    with atomic_path(csv) as tmp:
        t.to_csv(tmp, index=False, lineterminator="\n")
    write_text(md, markdown(t, commit))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="The CLAIM and TRIPOD+AI checklist, filled from the run.")
    ap.add_argument("--config", required=True, help="JSON: the config the jobs ran with (no user paths)")
    ap.add_argument("--files", required=True, help="JSON: the run's files by role (provenance, cohort, splits ...)")
    ap.add_argument("--studies", required=True, help="JSON: {study: {kind, cells: [cell with dir, hp]}}")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--md", required=True)
    a = ap.parse_args(argv)
    files = json.loads(a.files)
    t = build(json.loads(a.config), files, json.loads(a.studies))
    prov = json.loads(Path(files["provenance"]).read_text()) if files.get("provenance") else {}
    write(t, a.csv, a.md, (prov.get("git") or {}).get("commit", ""))
    print(t["status"].value_counts().to_string())


if __name__ == "__main__":
    main()
