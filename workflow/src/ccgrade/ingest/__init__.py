"""Ingest: raw DICOM folders (hospital exports, KiTS, or the phantom of ``demo``) to HU volumes per
patient and phase. ``index`` walks and classifies files, ``series`` groups them, ``phases`` assigns the
contrast phases, ``volumes`` converts pixels; ``patient`` is the one-job-per-patient entry
(``python -m ccgrade.ingest patient``). Gives ``results/ingest/<pid>/`` tables and NIfTI volumes.
"""
