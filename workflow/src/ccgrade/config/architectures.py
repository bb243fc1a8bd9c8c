"""The architecture registry: every network a study may name, in one table (issue 28).

Each entry says what the rest of the pipeline needs to know without importing torch: its name (the config's
``models`` key, the ``{arch}`` wildcard, a bundle's ``arch``), whether it takes 2D slices or 3D cubes (the
ROI kinds it goes with), and torchvision's ImageNet weight file when one exists (the pre-flight's weight
check; never fetched at run time). ``ccgrade.learn.models.BUILDERS`` holds the builder of each entry; a test keeps
the two, the config schema's enum and the Snakefile's wildcard in agreement. Adding an architecture is one
entry here and its builder there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    name: str
    dims: int                 # 2: slices (box, tumor, centroid, slice ROI kinds); 3: cubes (the cube kind)
    imagenet_url: str = ""    # torchvision's IMAGENET1K_V1 file ('' when there is none)
    about: str = ""


REGISTRY: dict[str, Architecture] = {a.name: a for a in (
    Architecture("resnet18", 2, "https://download.pytorch.org/models/resnet18-f37072fd.pth", "Li's 2D model"),
    Architecture("resnet34", 2, "https://download.pytorch.org/models/resnet34-b627a593.pth", "Cui"),
    Architecture("resnet50", 2, "https://download.pytorch.org/models/resnet50-0676ba61.pth", "Sun, Dai"),
    # SE-ResNet34 starts from ResNet34's weights wherever shapes match (the SE units from their own init)
    Architecture("se_resnet34", 2, "https://download.pytorch.org/models/resnet34-b627a593.pth", "Cui"),
    Architecture("resnet3d18", 3, "", "Li's 3D model (torchvision r3d_18)"),
)}

def names() -> tuple[str, ...]:
    """The registered names, in the table's order."""
    return tuple(REGISTRY)


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` to the table (a plug-in's entry; its builder goes to ``ccgrade.learn.models.register``).
    The config schema's enum, the ``{arch}`` wildcard and the weight check read the table when used."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", arch.name):
        raise ValueError(f"architecture name {arch.name!r}: lower-case letters, digits and _ only")
    if arch.dims not in (2, 3):
        raise ValueError(f"architecture {arch.name}: dims must be 2 or 3, not {arch.dims}")
    REGISTRY[arch.name] = arch
    return arch


def wildcard() -> str:
    """The ``{arch}`` wildcard's regular expression."""
    return "|".join(names())


def is_3d(name: str) -> bool:
    return REGISTRY[name].dims == 3
