"""The package's exception types; every message names the patient, phase and file it concerns."""

from __future__ import annotations

from dataclasses import dataclass


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


class InsufficientDataError(CcgradeError):
    """Too few patients (of a grade, in a fold) for a model to be fitted or validated: the stage writes
    outputs that say so instead of failing; any other error still fails the job."""


class PrivacyError(CcgradeError):
    """results/ holds an identifying value (a name, date, original UID or input path)."""


class SplitError(CcgradeError):
    """A patient-level split is impossible or leaks patients between sets."""


@dataclass(frozen=True)
class Problem:
    """One finding of a check: ``level`` is ``error`` (nothing runs until it is fixed), ``warning`` (the study
    runs; look at it) or ``skipped`` (a part of the study the cohort cannot feed, left out); ``message`` names
    the key, patient, phase and file; ``fix`` says what to do."""

    level: str
    message: str
    fix: str = ""
    #: what needs it to be fixed: "" the whole run; "crops" cropping and after; "study" splits, training and
    #: tables. A run asked only for the front half (``snakemake ingest``) takes "crops"/"study" errors as warnings.
    scope: str = ""

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


def problem(level: str, message: str, fix: str = "", *, patient: str | None = None, phase: str | None = None,
            file: str | None = None) -> Problem:
    """A Problem whose message is prefixed with the patient, phase and file, as the package's errors are."""
    return Problem(level, str(CcgradeError(message, patient=patient, phase=phase, file=file)), fix)


def raise_errors(problems: list[Problem], exc: type[CcgradeError], title: str) -> None:
    """Raise ``exc`` listing every error among ``problems`` (one per line, with its fix); nothing if none."""
    errors = [p for p in problems if p.level == "error"]
    if errors:
        body = "\n".join(f"  - {p.message}" + (f" (fix: {p.fix})" if p.fix else "") for p in errors)
        raise exc(f"{title}: {len(errors)} problem(s)\n{body}")
