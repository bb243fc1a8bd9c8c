"""ccgrade: reproducible multiphase-CT study pipeline for clear cell RCC grade prediction.

The package is laid out by stage, one subpackage each, in the order of ``STAGES``: a stage imports only
the stages before it and the foundation modules at this level (``errors``, ``outputs``, ``paths``, ``stats``,
``deps``), which import no stage (``tests/test_layout.py`` checks both, and that no import cycle exists).
Each subpackage's ``__init__`` says what the stage takes and gives."""

__version__ = "0.1.0"

#: Canonical phase codes used in file names and wildcards, with their long names.
PHASE_NAMES = {
    "up": "plain (unenhanced)",
    "cmp": "corticomedullary (arterial)",
    "np": "parenchymal (nephrographic)",
    "ep": "excretory (delayed)",
}

#: The stages, lowest first: a module of one may import only the stages before it (and its own).
STAGES = ("privacy", "config", "ingest", "annotations", "preprocess", "learn", "evaluate", "fusion", "report", "deploy",
          "plan")
