"""Annotations: readers for labelme boxes, label masks (NIfTI/NRRD) and polygon JSON (``readers``) and the
RTSTRUCT linker (``rtstruct``). Takes an ingested series and the user's annotation files; gives tumour
boxes and masks on the series grid.
"""
