"""Atomic writers for the pipeline's artefacts: tables (CSV + Markdown), JSON, arrays and figures."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{sfx}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically, sorted keys, numpy scalars converted."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_tsv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a tab-separated table atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, lineterminator="\n")


#: pandas' default missing-value markers, applied to every column except the identifiers
NA_MARKERS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
              "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
#: columns that hold identifiers: read as written (``007``, ``1e3``, ``NA`` and ``None`` are patient IDs, not numbers
#: or missing values)
ID_COLUMNS = ("patient_id", "series_uid", "sop_uid", "frame_uid", "study_uid", "file")


def read_table(path: str | os.PathLike, sep: str | None = None, **kwargs: Any) -> pd.DataFrame:
    """Read a TSV (or, by suffix or ``sep``, CSV) table with the identifier columns as the exact strings
    written; other columns are parsed as pandas does (numbers, missing-value markers)."""
    path = Path(path)
    sep = sep or ("," if path.suffix.lower() == ".csv" else "\t")
    header = pd.read_csv(path, sep=sep, nrows=0, **{k: v for k, v in kwargs.items() if k == "encoding"}).columns
    ids = [c for c in header if str(c).strip() in ID_COLUMNS]
    markers = NA_MARKERS if kwargs.pop("keep_default_na", True) else []  # False: no value is missing, as pandas
    return pd.read_csv(path, sep=sep, dtype={**{c: str for c in ids}, **kwargs.pop("dtype", {})},
                       keep_default_na=False, na_values={c: markers for c in header if c not in ids}, **kwargs)


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write an uncompressed .npz atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def markdown_table(df: pd.DataFrame, footnotes: list[str] | None = None, title: str | None = None) -> str:
    """Render a DataFrame as a GitHub-flavoured Markdown table with optional title and footnotes."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    if footnotes:
        lines.append("")
        lines += [f"{n}" for n in footnotes]
    return "\n".join(lines) + "\n"


def write_table(stem: str | os.PathLike, df: pd.DataFrame, *, footnotes: list[str] | None = None,
                title: str | None = None, markdown: pd.DataFrame | None = None,
                md: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write the table as CSV (machine-readable) and Markdown (for people; ``markdown`` is an optional
    formatted view): ``stem`` is the CSV's path (or its stem) and ``md`` the Markdown's (default: beside it)."""
    stem = Path(stem)
    csv = stem if stem.suffix == ".csv" else stem.with_suffix(".csv")
    md = Path(md) if md else csv.with_suffix(".md")
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")
    write_text(md, markdown_table(df if markdown is None else markdown, footnotes, title))
    return csv, md


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, imported on first use (keeps imports light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, stem: str | os.PathLike, dpi: int = 150, pdf: str | os.PathLike | None = None
                ) -> tuple[Path, Path]:
    """Save a matplotlib figure as PNG and PDF (deterministic metadata): ``stem`` is the PNG's path (or its
    stem) and ``pdf`` the PDF's (default: beside it)."""
    stem = Path(stem)
    png = stem if stem.suffix == ".png" else stem.with_suffix(".png")
    pdf = Path(pdf) if pdf else png.with_suffix(".pdf")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None, "Producer": None,
                                                  "Creator": None})
    return png, pdf


class Outputs:
    """The files a job writes, by role, exactly as its rule declares them (the rule passes its ``output``
    as JSON): a table's CSV under ``role`` and Markdown under ``role_md``, a figure's PNG and ``role_pdf``.
    Stages write where they are told; a role the rule did not declare is an error, not a guessed path."""

    def __init__(self, paths: dict[str, Any]):
        self.paths = {k: v for k, v in paths.items()}

    @classmethod
    def from_json(cls, text: str) -> "Outputs":
        return cls(json.loads(text))

    def __contains__(self, role: str) -> bool:
        return role in self.paths

    def __getitem__(self, role: str) -> Path:
        if role not in self.paths:
            raise KeyError(f"the rule declares no output {role!r} (it declares: {', '.join(self.paths) or 'none'})")
        return Path(self.paths[role])

    def table(self, role: str, df: pd.DataFrame, **kw: Any) -> tuple[Path, Path]:
        return write_table(self[role], df, md=self[f"{role}_md"], **kw)

    def figure(self, role: str, fig: Any, **kw: Any) -> tuple[Path, Path]:
        return save_figure(fig, self[role], pdf=self[f"{role}_pdf"], **kw)
