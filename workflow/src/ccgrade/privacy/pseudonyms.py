"""Privacy: pseudonyms for what results/ must not hold (docs/privacy.md; the scan that shows it holds none
is ``ccgrade.report.phiscan``).

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

from ccgrade.outputs import atomic_path, write_tsv

MODES = ("pseudonymise", "keep")
DEFAULT_DIR = "resources/private"
SECRET_NAME = "secret.key"


# --------------------------------------------------------------------------------------------- pseudonyms
def settings(value: str | dict | None) -> dict:
    """Config key ``privacy`` with its defaults: a mapping, or the shorthand ``privacy: keep``."""
    given = {"mode": value} if isinstance(value, str) else dict(value or {})
    return {"mode": MODES[0], "dir": DEFAULT_DIR, **given}


#: the least a study key must hold, in bits (estimated; see ``key_problem``)
MIN_KEY_BITS = 128
MAKE_KEY = "python -c \"import secrets; print(secrets.token_hex(32))\" > {path}"


def key_fix(path: str | Path) -> str:
    """What to do about a weak key at ``path``: the command that makes a good one, and what a new key costs."""
    return (f"make a good one with  {MAKE_KEY.format(path=path)}  (a new key renames every pseudonym, so results/ "
            "is remade)")


def key_problem(text: str) -> str:
    """Why ``text`` is too weak a key ('' when it is not): under ``MIN_KEY_BITS`` by an estimate that takes
    its shortest repeating unit (``c0ffee`` × 11 holds what ``c0ffee`` holds) and each character's empirical
    entropy within it. A random 64-digit hex key (what ``ensure_secret`` writes) estimates at about 240 bits."""
    import math
    from collections import Counter

    text = text.strip()
    n = len(text)
    unit = next((text[:k] for k in range(1, n + 1) if n % k == 0 and text[:k] * (n // k) == text), text)
    counts = Counter(unit)
    bits = max(0.0, -sum(c * math.log2(c / len(unit)) for c in counts.values())) if unit else 0.0
    if bits < MIN_KEY_BITS:
        repeated = f" ({len(unit)} characters repeated {n // max(len(unit), 1)} times)" if len(unit) < n else ""
        return f"holds about {bits:.0f} bits of entropy{repeated}, under the {MIN_KEY_BITS} a key needs"
    return ""


def secure_private(folder: str | Path) -> None:
    """The private folder readable by its owner only: the folder and every folder below 0700, every file
    0600 (files written by jobs inherit the umask; this runs at every start)."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o700)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o600)


def ensure_secret(path: str | Path) -> Path:
    """The study's secret key file, created (32 random bytes, hex, mode 0600, its folder 0700) when absent;
    never printed. A key that exists is checked: a weak one (``key_problem``) stops the run with the command
    that makes a good one, before any job."""
    path = Path(path)
    secure_private(path.parent)
    if not path.exists():
        with atomic_path(path, suffix="") as tmp:
            tmp.write_text(secrets.token_hex(32) + "\n")
            os.chmod(tmp, 0o600)
    weak = key_problem(path.read_text())
    if weak:
        raise ValueError(f"privacy key {path} {weak}: {key_fix(path)}")
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
        weak = key_problem(text)
        if weak:
            raise ValueError(f"privacy key {path} {weak}: {key_fix(path)}")
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
PATH_KEYS = (("cohort", "sheet"), ("cohort", "kits", "root"), ("ingest", "phase_map"), ("predict", "sheet"),
             ("external", "sheet"))


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


# ------------------------------------------------------------------------------------------ free text
#: words a header's free text (SeriesDescription) may keep in results/: the vocabulary of CT series names
#: (anatomy, phase, plane, kernel, reconstruction, dose and scout words), never a name; any other word is
#: dropped and the text marked with a keyed tag (``safe_text``). The ingest's own phase keywords and avoided
#: kernels are added to it (``text_words``).
DESCRIPTION_WORDS = frozenset("""
abd abdo abdomen abdominal pelvis pelvic chest thorax thoracic kidney kidneys renal nephro uro urography
urogram urographic liver adrenal body trunk whole wb ct cect cta mdct mr
phase phases multiphase triphasic biphasic plain native non nc noncontrast unenhanced contrast enhanced ce pre
precontrast post postcontrast arterial art early late cortical corticomedullary cmp venous portal pv pvp np
nephrographic parenchymal excretory delayed delay ep up equilibrium split bolus tracking timing test
axial ax transverse tra coronal cor sagittal sag obl oblique mpr mip minip vr 3d 2d recon reconstruction
reformat reformatted thin thick slice slices soft tissue std standard smooth sharp bone lung detail edge
kernel filter iterative ir idose asir asir-v safire admire imr dlir aidr fbp mbir
dose report summary screen save exam patient protocol localizer localiser scout topogram surview scanogram
survey spiral helical sequential vol volume series image images iv oral with without w wo and of the for
mm cm s sec min kv kvp ma mas ml cc
tumor tumour tumors tumours lesion lesions mass masses gtv ctv ptv roi rcc ccrcc neoplasm cyst left right lt rt
ccgrade rtstruct structure structures set seg segmentation label labels contour contours annotation manual auto
""".split())
_WORD = re.compile(r"[A-Za-z0-9]+(?:[.,][0-9]+)?")
#: short numbers (slice thickness, kV, a delay in s): at most two digits before a decimal, with a unit
_SHORT_NUMBER = re.compile(r"\d{1,3}(?:[.,]\d{1,3})?(?:mm|cm|s|sec|min|kv|kvp|ml|ma|mas)?", re.I)


def text_words(cfg_ingest: dict | None) -> frozenset[str]:
    """``DESCRIPTION_WORDS`` and the config's phase keywords and avoided kernels, as lower-case words."""
    extra: set[str] = set()
    for words in (cfg_ingest or {}).get("keywords", {}).values():
        for w in words:
            extra.update(t.lower() for t in _WORD.findall(str(w)))
    for w in ((cfg_ingest or {}).get("reconstruction") or {}).get("avoid_kernels", []):
        extra.update(t.lower() for t in _WORD.findall(str(w)))
    return DESCRIPTION_WORDS | extra


#: scanner kernel codes (Siemens B30f, Br40d, I26f; Toshiba FC03; GE/Philips letters): not names
_KERNEL_CODE = re.compile(r"[A-Za-z]{1,2}\d{1,3}[A-Za-z]?\d?")


def _allowed(word: str, words: frozenset[str]) -> bool:
    return (word.lower() in words or len(word) == 1 or bool(_SHORT_NUMBER.fullmatch(word))
            or bool(_KERNEL_CODE.fullmatch(word)))


def safe_text(value: object, words: frozenset[str], key: "Keyer") -> str:
    """What results/ may hold of a free-text header value: the value as written when each of its words is in
    ``words`` (or a short number: ``5mm``, ``120kV``); else its allowed words and a keyed tag (``#3fa2c1``,
    the same for the same text, so that series stay apart), every other word dropped."""
    v = "" if value is None or value != value else str(value)
    found = _WORD.findall(v)
    if all(_allowed(w, words) for w in found):
        return v
    kept = " ".join(w for w in found if _allowed(w, words))
    return f"{kept} #{key.key('text', v)[:6]}".strip()


def text_needles(value: object, words: frozenset[str]) -> list[str]:
    """What the privacy scan looks for in a free-text value: nothing when every word is allowed; else the
    whole value, each word not allowed, and each pair of neighbouring words one of which is not allowed, as
    written (a name and a surname, a name and an MRN)."""
    v = "" if value is None else str(value).strip()
    spans = [(m.start(), m.end(), _allowed(m.group(), words)) for m in _WORD.finditer(v)]
    if all(ok for _, _, ok in spans):
        return []
    out = [v] + [v[a:b] for a, b, ok in spans if not ok]
    out += [v[a[0]:b[1]] for a, b in zip(spans, spans[1:]) if not (a[2] and b[2])]
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


def mirrors(src: str | Path, dst: str | Path) -> bool:
    """Whether ``dst`` is a current copy of ``src`` (the same modification time and size)."""
    src, dst = Path(src), Path(dst)
    return dst.is_file() and src.is_file() and \
        (dst.stat().st_mtime, dst.stat().st_size) == (src.stat().st_mtime, src.stat().st_size)


def mirror(src: str | Path, dst: str | Path) -> Path:
    """``dst`` a copy of ``src`` with its modification time, refreshed only when ``src`` changed."""
    import shutil

    src, dst = Path(src), Path(dst)
    if not mirrors(src, dst):
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
