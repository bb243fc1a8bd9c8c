"""Privacy, the lowest stage: keyed pseudonyms for DICOM UIDs and names, scrubbing of logs, and the
private lookup table. Takes the per-study secret under ``resources/private/``; gives ``Keyer`` and the
scrub helpers every later stage writes through, so that ``results/`` holds no identifier beyond the
cohort's own IDs (the scan that checks it is ``ccgrade.report.phiscan``).
"""
