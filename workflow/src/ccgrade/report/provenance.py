"""What produced a study's results: package versions, the configuration's hash, the code's git commit,
the machine and the accelerator. Written beside the results (``results/provenance.json``) so that a
table can be traced to the exact recipe; it holds no patient data and no path outside the repository."""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ["snakemake", "snakemake-executor-plugin-slurm", "torch", "torchvision", "numpy", "scipy", "pandas",
            "scikit-learn", "statsmodels", "pydicom", "pylibjpeg", "pylibjpeg-openjpeg", "python-gdcm",
            "pylibjpeg-rle", "pyjpegls", "pylibjpeg-libjpeg", "SimpleITK", "pyradiomics", "matplotlib", "ccgrade"]


def config_hash(config: dict) -> str:
    """SHA-256 of the configuration as canonical JSON (sorted keys): equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def git_commit(repo: str | Path) -> dict:
    """The checkout's commit and whether tracked files differ from it ('unknown' outside a git checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def record(config: dict, commit: dict, derived: dict | None = None, hashes: dict | None = None) -> dict:
    """The provenance record of a run with ``config`` (as the config files give it) from the checkout at
    ``commit`` (see ``git_commit``); ``derived`` is the config the pre-flight derived from the cohort (what the
    jobs ran with): its hash, phases and studies are recorded too. ``hashes`` gives both hashes when they were
    taken before the user's paths were removed from the configs (``privacy.public_config``)."""
    import torch

    cuda = torch.cuda.is_available()
    derived = derived or config
    hashes = hashes or {"config_sha256": config_hash(config), "derived_config_sha256": config_hash(derived)}
    return {
        "config_sha256": hashes["config_sha256"],
        "derived_config_sha256": hashes["derived_config_sha256"],
        "phases": derived.get("phases"),
        "studies": sorted(derived.get("training", {}).get("studies", {})),
        "seed": config.get("seed"),
        "cohort_source": derived.get("cohort", {}).get("source"),
        "privacy": (derived.get("privacy") or {}).get("mode", "pseudonymise"),
        "git": commit,
        "python": platform.python_version(),
        "packages": versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "release": platform.release()},
        "accelerator": {"cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else None,
                        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None},
    }


def main(argv: list[str] | None = None) -> None:
    from ccgrade.outputs import write_json

    ap = argparse.ArgumentParser(description="Write the provenance record of a study run.")
    ap.add_argument("--config", default=None, help="JSON: the study configuration as the config files give it")
    ap.add_argument("--derived", default=None, help="JSON: the configuration derived from the cohort")
    ap.add_argument("--hashes", default=None, help="JSON {config_sha256, derived_config_sha256} taken beforehand")
    ap.add_argument("--git", required=True, help="JSON: {commit, dirty} of the workflow's checkout")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    derived = json.loads(a.derived) if a.derived else None
    rec = record(json.loads(a.config) if a.config else derived or {}, json.loads(a.git), derived,
                 json.loads(a.hashes) if a.hashes else None)
    write_json(a.out, rec)
    print(json.dumps({k: rec[k] for k in ("config_sha256", "git")}))


if __name__ == "__main__":
    main()
