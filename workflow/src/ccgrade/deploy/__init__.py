"""Deployment: a trained cell as a validated bundle (``bundle``), grading new patients with it
(``predict``) and external validation at another centre (``external``, ``external_deep``).
Takes a finished study's model cells; gives bundles, predictions for new patients and the external
centre's tables.
"""
