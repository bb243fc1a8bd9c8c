"""Fusion (Sun et al.): pyradiomics features (``radiomics``), the radiomics + deep + clinical models
(``model``; ``python -m ccgrade.fusion``) and their tables and figures (``report``). Takes volumes,
masks, crops and the cohort table; gives the fusion comparison.
"""
