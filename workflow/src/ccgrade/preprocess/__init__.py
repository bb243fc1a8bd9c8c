"""Preprocessing: tumour crops per ROI kind (``crops``), tumour geometry from masks (``geometry``),
patient-level splits (``splits``), cohort-level tables gathered from per-patient files (``collect``) and
the crop montage figure (``figures``). Takes ingested volumes and annotations; gives crop archives,
manifests and split files.
"""
