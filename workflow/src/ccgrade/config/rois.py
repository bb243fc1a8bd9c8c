"""The ROI-kind registry: every kind of crop an ROI setting (config ``rois.<name>.kind``) may name, in one table.

Each entry says what the rest of the pipeline needs to know without importing numpy: whether the crop is a
2D slice image or a 3D cube (the architectures it pairs with), whether it needs a tumour outline (a mask,
RTSTRUCT or polygons: the tumour-only and cube crops), whether the image outside the tumour is set to zero,
whether the whole slice is the image, the order ``source: auto`` tries annotation formats in (the paper's
own first), and a sentence for the reporting checklist. ``ccgrade.preprocess.crops`` holds how each kind's
boxes are shaped (``BOX_SHAPES``); the config schema takes its enum from here when it is read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

#: the annotation formats that outline the tumour (a box alone does not)
OUTLINE_FORMATS = ("mask", "rtstruct", "polygons")


@dataclass(frozen=True)
class RoiKind:
    name: str
    dims: int                 # 2: slice images; 3: one cube per patient
    outline: bool             # needs a tumour outline (mask, RTSTRUCT or polygons)
    sources: tuple[str, ...]  # the order ``source: auto`` tries annotation formats in
    about: str                # the crop in words (a format string over the ROI setting's keys)
    masked: bool = False      # the image outside the tumour is set to 0
    whole_slice: bool = False  # the whole slice is the image (the tumour's boxes are kept)


REGISTRY: dict[str, RoiKind] = {k.name: k for k in (
    RoiKind("box", 2, False, ("labelme", "mask", "rtstruct", "polygons"),
            "tumour bounding box + {margin_mm} mm"),
    RoiKind("tumor", 2, True, ("mask", "rtstruct", "polygons"), "tumour only (outside set to 0)", masked=True),
    RoiKind("centroid", 2, False, ("polygons", "mask", "rtstruct", "labelme"), "{box_px}-px box at the tumour centroid"),
    RoiKind("cube", 3, True, ("mask", "rtstruct", "polygons"), "tumour cube resampled to {spacing_mm} mm"),
    RoiKind("slice", 2, False, ("mask", "rtstruct", "polygons", "labelme"), "whole tumour slices", whole_slice=True),
)}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def describe(roi: dict) -> str:
    """The crop an ROI setting makes, in words (the checklist's item on preprocessing)."""
    kind = REGISTRY.get(roi["kind"])
    if kind is None:
        return roi["kind"]
    return kind.about.format_map(defaultdict(lambda: None, {"margin_mm": 0, **roi}))
