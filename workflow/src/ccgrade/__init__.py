"""ccgrade: reproducible multiphase-CT study pipeline for clear cell RCC grade prediction."""

__version__ = "0.1.0"

#: Canonical phase codes used in file names and wildcards, with their long names.
PHASE_NAMES = {
    "up": "plain (unenhanced)",
    "cmp": "corticomedullary (arterial)",
    "np": "parenchymal (nephrographic)",
    "ep": "excretory (delayed)",
}
