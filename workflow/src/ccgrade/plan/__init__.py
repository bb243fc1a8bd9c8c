"""Planning, the highest stage: the pre-flight that reads every input before any job runs and reports
every problem with its fix (``preflight``), and the starter config for a new cohort
(``python -m ccgrade.plan.init``).
"""
