"""The study registry: what each kind of study builds from its cells' predictions, and where it goes.

A study (config ``training.studies.<name>``) is of a *kind* (``kind:``, else its name when that is a
registered kind): the kind names the builder function that makes its tables and figures from the
trained cells' predictions, and the items it writes, each with its report caption and label. The rules
(``workflow/rules/train.smk``) make one tables job per study from this registry and declare exactly these
files, passing them back by role (``--outputs``); the builder writes where it is told and never invents a
path. A study whose kind is not registered only trains (Sun's embeddings for the fusion, say).

Adding a kind of study: one builder ``f(models, out, opt=...)`` (``out`` an
:class:`~ccgrade.outputs.Outputs`; ``pinned=`` too when the kind says so) in a module of ``evaluate``
(one per paper: ``cui``, ``li``, ``dai``, ``sun``), that module imported in :func:`builder`, and one
:class:`Kind` entry in :data:`REGISTRY` (plus ``kind``'s enum in the config schema); then a config block
``training.studies.<name>: {kind: <kind>, ...}`` (docs/extending.md).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from ccgrade.outputs import Outputs
from ccgrade.paths import FIGURES, TABLES


@dataclass(frozen=True)
class Item:
    """One table (CSV + Markdown) or figure (PNG + PDF) of a study, written under ``role``."""

    role: str
    kind: str  # "table" | "figure"
    stem: str  # file name without suffix; "{study}" is the study's name
    caption: str  # workflow/report/<caption>
    label: str

    def paths(self, study: str) -> dict[str, str]:
        """This item's files by role: the table's CSV under ``role`` and its Markdown under ``role_md``
        (a figure: PNG and ``role_pdf``)."""
        name = self.stem.format(study=study)
        if self.kind == "table":
            return {self.role: f"{TABLES}/{name}.csv", f"{self.role}_md": f"{TABLES}/{name}.md"}
        return {self.role: f"{FIGURES}/{name}.png", f"{self.role}_pdf": f"{FIGURES}/{name}.pdf"}


@dataclass(frozen=True)
class Kind:
    """A kind of study: its builder (``"<module>.<function>"`` of ``ccgrade.evaluate``, imported by
    ``builder`` only when a tables job runs: the Snakefile reads the registry at parse time and should not
    pay for scipy), report category and items."""

    name: str
    builder: str
    category: str
    items: tuple[Item, ...]
    #: items made by a job of their own (Li's Grad-CAM figure needs the weights, not only predictions)
    heatmaps: Item | None = None
    #: the builder takes the config's pinned phase sets (Cui Table 4 says they were not selected)
    pinned: bool = False


def _t(role: str, stem: str, caption: str, label: str) -> Item:
    return Item(role, "table", stem, caption, label)


def _f(role: str, stem: str, caption: str, label: str) -> Item:
    return Item(role, "figure", stem, caption, label)


REGISTRY: dict[str, Kind] = {
    "cui": Kind("cui", "cui.cui_tables", "Cui et al.", (
        _t("t3", "{study}_table3", "cui_tables.rst", "Cui Table 3"),
        _t("t4", "{study}_table4", "cui_tables.rst", "Cui Table 4"),
        _f("roc", "{study}_roc", "cui_roc.rst", "Cui Figures 2-4"),
        _f("confusion", "{study}_confusion", "cui_roc.rst", "Cui Figures 2-4 (confusion matrices)"),
    ), pinned=True),
    "li": Kind("li", "li.li_tables", "Li et al.", (
        _t("t2", "{study}_table2", "li_tables.rst", "Li Table 2"),
        _t("comparisons", "{study}_comparisons", "li_tables.rst", "Li Table 2 tests"),
        _t("t3", "{study}_table3", "li_tables.rst", "Li Table 3"),
        _t("mcnemar", "{study}_mcnemar", "li_tables.rst", "Li strong vs weak"),
        _f("roc", "{study}_roc", "li_roc.rst", "Li Figures 4-5"),
        _f("confusion", "{study}_confusion", "li_roc.rst", "Li Figures A1-A2"),
    ), heatmaps=_f("heatmaps", "{study}_heatmaps", "li_heatmaps.rst", "Li Figure 6")),
    "dai": Kind("dai", "dai.dai_tables", "Dai", (
        _t("t5", "{study}_table5", "dai_tables.rst", "Dai Table 5"),
        _f("roc", "{study}_roc", "dai_tables.rst", "Dai Figures 9-10"),
        _f("confusion", "{study}_confusion", "dai_tables.rst", "Dai Figure 10 (confusion matrices)"),
    )),
    "sun": Kind("sun", "sun.sun_tables", "Sun et al.", (
        _t("rois", "{study}_rois", "sun_rois.rst", "Sun: the three ROI settings"),
        _f("roc", "{study}_roc", "sun_rois.rst", "Sun: ROC curves per ROI setting"),
    )),
}


#: every study's failure analysis (``ccgrade.evaluate.failures``), made by a job of its own: it needs the weights and crops
FAILURES: tuple[Item, ...] = (
    _t("failures", "{study}_failures", "failures.rst", "Failure analysis: most confident errors"),
    _t("error_rates", "{study}_error_rates", "failures.rst", "Failure analysis: error rates by subgroup"),
    _f("failure_montage", "{study}_failures", "failures.rst", "Failure analysis: crops and Grad-CAM"),
)


#: every study's decision and calibration curves on its test patients (``ccgrade.evaluate.curves``), made by its
#: tables job after the kind's builder
CURVES: tuple[Item, ...] = (
    _t("decision", "{study}_decision", "decision.rst", "Decision curves and calibration, test patients"),
    _f("decision_figure", "{study}_decision", "decision.rst", "Decision and calibration curves, test patients"),
)


def failure_outputs(study: str) -> dict[str, str]:
    """The files of a study's failure-analysis job, by role."""
    out: dict[str, str] = {}
    for item in FAILURES:
        out.update(item.paths(study))
    return out


def kind_of(name: str, study: dict) -> str | None:
    """A configured study's kind: its ``kind``, else its name when that is registered, else None (train only)."""
    kind = study.get("kind", name if name in REGISTRY else None)
    return kind if kind in REGISTRY else None


def study_kinds(studies: dict) -> dict[str, str]:
    """{study: kind} of the configured studies that build tables."""
    return {n: k for n, st in studies.items() if (k := kind_of(n, st))}


def label(item: Item, study: str, kind: str) -> str:
    return item.label if study == kind else f"{item.label} ({study})"


def outputs(kind: str, study: str) -> dict[str, str]:
    """Every file the study's tables job writes, by role (the rule's output names)."""
    out: dict[str, str] = {}
    for item in REGISTRY[kind].items + CURVES:
        out.update(item.paths(study))
    return out


def targets(kind: str, study: str) -> list[str]:
    """The study's final files (every table's CSV and figure's PNG, and their Markdown and PDF)."""
    k = REGISTRY[kind]
    out = list(outputs(kind, study).values())
    if k.heatmaps:
        out += list(k.heatmaps.paths(study).values())
    return out + list(failure_outputs(study).values())


def report_items(kind: str, study: str) -> dict[str, dict]:
    """Per output role that goes into the HTML report: its caption file, category, and label with its kind
    (table or figure)."""
    k = REGISTRY[kind]
    out = {item.role: {"caption": item.caption, "category": k.category, "label": (label(item, study, kind), item.kind)}
           for item in k.items + ((k.heatmaps,) if k.heatmaps else ())}
    # every study has these: their labels always name the study
    out.update({item.role: {"caption": item.caption, "category": k.category, "label": (f"{item.label} ({study})", item.kind)}
                for item in FAILURES + CURVES})
    return out


def builder(kind: str):
    """The kind's builder function. (Imported here, inside a function: the rules' code inputs follow
    such imports too, so a tables job still reruns when a paper's module or the shared ``tables`` changes.)"""
    from ccgrade.evaluate import cui, dai, li, sun

    module, name = REGISTRY[kind].builder.split(".")
    return getattr({"cui": cui, "dai": dai, "li": li, "sun": sun}[module], name)


def build(kind: str, models: list[dict], out: Outputs, opt: dict | None = None, pinned: dict | None = None):
    """Run the kind's builder on the study's cells, writing to ``out`` (the rule's declared files)."""
    from ccgrade.evaluate import curves

    kw = {"opt": opt}
    if REGISTRY[kind].pinned:
        kw["pinned"] = pinned or {}
    result = builder(kind)(models, out, **kw)
    if "decision" in out:
        curves.study_curves(models, out, opt)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="A study's tables and figures from its cells' predictions.")
    ap.add_argument("--kind", required=True, choices=sorted(REGISTRY))
    ap.add_argument("--models", required=True, help="JSON list of cells {arch, phases, roi, variant, fold, seed, dir}")
    ap.add_argument("--outputs", required=True, help="JSON {role: path}: the files the rule declares")
    ap.add_argument("--stats", default="{}", help="JSON: the config's statistics section (mode, adjust, n_boot)")
    ap.add_argument("--pinned", default="{}", help="JSON: {arch: [phase sets]} the config fixes (Cui Table 4)")
    a = ap.parse_args(argv)
    models = json.loads(a.models)
    from ccgrade.evaluate.tables import stats_options

    build(a.kind, models, Outputs.from_json(a.outputs), stats_options(json.loads(a.stats)), json.loads(a.pinned))
    print(f"{len(models)} models evaluated")


if __name__ == "__main__":
    main()
