"""Evaluation: the papers' tables (``tables``), the study-kind registry that builds them (``studies``),
the baseline table (``baseline``), failure analysis (``failures``), Grad-CAM heatmaps (``heatmaps``) and
net benefit (``decision``). Takes model predictions and the cohort table; gives every study's tables and
figures.
"""
