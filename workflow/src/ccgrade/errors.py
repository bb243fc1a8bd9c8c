"""The package's exception types; every message names the patient, phase and file it concerns."""

from __future__ import annotations


class CcgradeError(Exception):
    """Base error: a message prefixed with the patient, phase and file it concerns."""

    def __init__(self, message: str, *, patient: str | None = None, phase: str | None = None,
                 file: str | None = None) -> None:
        self.patient, self.phase, self.file, self.reason = patient, phase, file, message
        where = [f"{k} {v}" for k, v in (("patient", patient), ("phase", phase), ("file", file)) if v]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ConfigError(CcgradeError):
    """The configuration is invalid."""


class CohortError(CcgradeError):
    """The cohort sheet or clinical table is invalid."""


class DicomError(CcgradeError):
    """A DICOM file or series cannot be used."""


class GeometryError(CcgradeError):
    """Image or annotation geometry is inconsistent."""


class AnnotationError(CcgradeError):
    """An annotation file is malformed or does not fit its image."""


class SplitError(CcgradeError):
    """A patient-level split is impossible or leaks patients between sets."""
