"""Configuration: the cohort sheet (``cohort``), the study config derived and validated against the
schemas (``studyconfig``), the model matrix of phases x architectures x ROIs x seeds (``matrix``) and the
architecture registry (``architectures``). Takes ``config.yaml`` and the sheet; gives the validated
config and the list of model cells every later stage reads.
"""
