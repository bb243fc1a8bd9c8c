"""Privacy: pseudonyms for what results/ must not hold (README "Privacy"; the scan that shows it holds none
is ``ccgrade.phiscan``).

Under ``privacy.mode: pseudonymise`` (the default) DICOM UIDs written to ``results/`` are replaced by keyed
hashes in the UUID-derived ``2.25.<integer>`` form (HMAC-SHA256 under a per-study secret kept outside
``results/``, created on the first run and never printed), the consistent replacement DICOM PS3.15's
confidentiality profile asks of a de-identifier: stable across reruns, so that cached results stay valid
and annotations drawn on the original UIDs still link (the annotation side is hashed with the same key
before it is compared). Files inside the user's folders are named by role and index (``file 12 (series 3,
instance 7)``, ``the cmp rtstruct``), never by path or name; the mapping back to the originals is written
to ``<private dir>/lookup.tsv`` (outside ``results/``) for quality control.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from pathlib import Path

import pandas as pd

from .outputs import atomic_path, write_tsv

MODES = ("pseudonymise", "keep")
DEFAULT_DIR = "resources/private"
SECRET_NAME = "secret.key"


# --------------------------------------------------------------------------------------------- pseudonyms
def settings(value: str | dict | None) -> dict:
    """Config key ``privacy`` with its defaults: a mapping, or the shorthand ``privacy: keep``."""
    given = {"mode": value} if isinstance(value, str) else dict(value or {})
    return {"mode": MODES[0], "dir": DEFAULT_DIR, **given}


def ensure_secret(path: str | Path) -> Path:
    """The study's secret key file, created (32 random bytes, hex, mode 0600) when absent; never printed."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix="") as tmp:
            tmp.write_text(secrets.token_hex(32) + "\n")
            os.chmod(tmp, 0o600)
    return path


class Keyer:
    """Keyed pseudonyms. ``Keyer(None)`` keeps every value (``privacy.mode: keep``)."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret

    @classmethod
    def from_file(cls, path: str | Path | None) -> "Keyer":
        if not path:
            return cls(None)
        text = Path(path).read_text().strip()
        if len(text) < 32:
            raise ValueError(f"privacy secret {path} is shorter than 32 characters: delete it to have a new one made")
        return cls(text.encode())

    @property
    def active(self) -> bool:
        return self.secret is not None

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, value: object) -> str:
        """A UID's pseudonym: ``2.25.`` and a 128-bit integer (a valid UID; '' stays '')."""
        v = "" if value is None else str(value)
        if not self.active or v in ("", "nan"):
            return v
        return "2.25." + str(int.from_bytes(self._digest("uid", v)[:16], "big"))

    def key(self, kind: str, value: object) -> str:
        """A short keyed hash of any value (a file's path, a file name): 16 hex digits."""
        v = str(value)
        if not self.active:
            return v
        return self._digest(kind, v)[:8].hex()


def scrub(text: str, replacements: dict[str, str]) -> str:
    """``text`` with every original (a path, a name) replaced by its label, longest first."""
    keys = sorted((k for k in replacements if k), key=len, reverse=True)
    if not keys or not text:
        return text
    rx = re.compile("|".join(re.escape(k) for k in keys))
    return rx.sub(lambda m: replacements[m.group(0)], text)


def scrub_frame(df: pd.DataFrame, replacements: dict[str, str], skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every text column of ``df`` scrubbed (see :func:`scrub`)."""
    if not replacements or df.empty:
        return df
    out = df.copy()
    for c in out.columns:
        if c in skip or not (pd.api.types.is_object_dtype(out[c]) or pd.api.types.is_string_dtype(out[c])):
            continue
        out[c] = [scrub(v, replacements) if isinstance(v, str) else v for v in out[c]]
    return out


def run_scrubbed(fn, replacements: dict[str, str] | None):
    """Run a job's ``fn()``; in pseudonymise mode an error is printed with its paths and names replaced by
    their labels (the job log lives in results/) and the job exits 1."""
    if replacements is None:
        return fn()
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - every error leaves the job, scrubbed
        print(f"{type(e).__module__}.{type(e).__name__}: {scrub(str(e), replacements)}", file=sys.stderr)
        print("(file names are replaced by their roles under privacy.mode: pseudonymise; "
              "the lookup table outside results/ maps them back)", file=sys.stderr)
        raise SystemExit(1) from None


#: config keys that hold the user's paths (a folder name may identify): jobs whose params reach the report
#: get ``public_config``, in which each is replaced by its role
PATH_KEYS = (("cohort", "sheet"), ("cohort", "kits", "root"), ("ingest", "phase_map"))


def public_config(cfg: dict) -> dict:
    """``cfg`` with the user's paths (``PATH_KEYS``) replaced by their role: what a job may show (Snakemake's
    report embeds the parameters of every job whose output it shows)."""
    out = json.loads(json.dumps(cfg))
    for path in PATH_KEYS:
        node = out
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]):
            node[path[-1]] = f"<{'.'.join(path)}>"
    return out


def for_job(secret: str | Path | None, sources: dict[str, dict[str, str]]) -> tuple[Keyer, dict[str, str] | None]:
    """A job's key (``--secret``) and, when it pseudonymises, the role names of its annotation files
    (``sources``: phase -> format -> path) for ``run_scrubbed`` and ``scrub``; ``None`` when it keeps them."""
    key = Keyer.from_file(secret)
    return key, annotation_labels(sources) if key.active else None


def annotation_labels(sources: dict[str, dict[str, str]]) -> dict[str, str]:
    """Role names of a patient's annotation files (``the cmp rtstruct``, ``cmp labelme file 3``), keyed by
    every spelling a message may hold: full path and file name (a labelme folder's files each)."""
    out: dict[str, str] = {}
    for phase, fmts in sources.items():
        for fmt, path in (fmts or {}).items():
            if not path:
                continue
            label = f"the {phase} {fmt}"
            p = Path(path)
            if p.is_dir():
                for i, f in enumerate(sorted(p.iterdir()), 1):
                    out[str(f)] = out[f.name] = f"{phase} {fmt} file {i}"
            out[str(path)] = label
            if p.name not in out:
                out[p.name] = label
    return out


# ------------------------------------------------------------------------------------- study plumbing
def write_sources(path: str | Path, sources: dict) -> Path:
    """The private record of the user's input paths (what the scan looks for), rewritten only when its
    content changes (so that the scan is not rerun for nothing)."""
    path = Path(path)
    text = json.dumps(sources, sort_keys=True, indent=1)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix="") as tmp:
            tmp.write_text(text)
    return path


def mirror(src: str | Path, dst: str | Path) -> Path:
    """``dst`` a copy of ``src`` with its modification time, refreshed only when ``src`` changed."""
    import shutil

    src, dst = Path(src), Path(dst)
    if not dst.exists() or (dst.stat().st_mtime, dst.stat().st_size) != (src.stat().st_mtime, src.stat().st_size):
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst, suffix="") as tmp:
            shutil.copy2(src, tmp)
    return dst


def write_lookup(parts: list[str | Path], out: str | Path) -> pd.DataFrame:
    """One lookup table (pseudonym -> original) from the index jobs' private tables."""
    frames = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in parts if Path(p).exists()]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LOOKUP_COLUMNS)
    write_tsv(out, df)
    return df


LOOKUP_COLUMNS = ["patient_id", "kind", "pseudonym", "original"]

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Privacy: gather the index jobs' pseudonym tables (the lookup).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a2 = sub.add_parser("lookup", help="gather the index jobs' pseudonym tables")
    a2.add_argument("--parts", nargs="*", default=[])
    a2.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    df = write_lookup(a.parts, a.out)
    print(f"lookup: {len(df)} pseudonyms")


if __name__ == "__main__":
    main()
