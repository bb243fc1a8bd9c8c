"""Report: provenance of inputs and code (``provenance``), the TRIPOD+AI checklist read from the run's
files (``checklist``) and the privacy scan of everything under ``results/`` (``phiscan``).
"""
