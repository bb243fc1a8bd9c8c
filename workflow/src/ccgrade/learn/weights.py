"""Where ImageNet weights are read from, and how to put them there: nothing is downloaded at run time.

``pretrained: imagenet`` loads torchvision's weight file from the torch cache
(``$TORCH_HOME/hub/checkpoints``, else ``$XDG_CACHE_HOME/torch/hub/checkpoints``, else
``~/.cache/torch/hub/checkpoints``, as ``torch.hub.get_dir`` resolves it) or from a preset's
``weights_file``. This module needs no torch, so that the pre-flight check can name every missing file,
with the one command that fetches it on a networked machine, before any job runs.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ccgrade.config.architectures import REGISTRY
from ccgrade.errors import Problem

def imagenet_urls() -> dict[str, str]:
    """torchvision's IMAGENET1K_V1 files of the architectures that have one (read from the registry)."""
    return {a.name: a.imagenet_url for a in REGISTRY.values() if a.imagenet_url}


def hub_dir(environ: dict | None = None) -> Path:
    """torch.hub's directory, resolved as torch does (without importing it)."""
    env = os.environ if environ is None else environ
    home = env.get("TORCH_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub"


def imagenet_path(arch: str, weights_file: str | None = None, environ: dict | None = None) -> Path:
    """Where the ImageNet weights of ``arch`` are expected (the configured file, else the torch cache)."""
    if weights_file:
        return Path(weights_file)
    if arch not in imagenet_urls():
        raise ValueError(f"{arch}: no ImageNet weights exist for it (use pretrained: none)")
    return hub_dir(environ) / "checkpoints" / imagenet_urls()[arch].rsplit("/", 1)[1]


def fetch_command(arch: str, path: Path) -> str:
    """The one command that places the file, run on a machine with internet access."""
    return f"curl -L --create-dirs -o {shlex.quote(str(path))} {imagenet_urls()[arch]}"


def missing_message(arch: str, path: Path) -> str:
    return (f"ImageNet weights for {arch} not found at {path}: nothing is downloaded at run time. On a machine "
            f"with internet access run: {fetch_command(arch, path)} (then copy the file to {path} here), or set "
            "the preset's weights_file, or use pretrained: none")


def missing_weights(cfg: dict, environ: dict | None = None) -> list[Problem]:
    """One error per ImageNet weight file that a cell of the matrix needs and the machine lacks."""
    from ccgrade.config import matrix

    need: dict[Path, tuple[str, list[str]]] = {}
    for study, st in cfg.get("training", {}).get("studies", {}).items():
        for arch, _roi, _sets in matrix.study_models(st):
            for var in matrix.variants(st):
                hp = matrix.hyper(cfg, study, arch, var)
                if hp.get("pretrained", "none") != "imagenet" or arch not in imagenet_urls():
                    continue
                path = imagenet_path(arch, hp.get("weights_file"), environ)
                who = need.setdefault(path, (arch, []))[1]
                if f"{study}/{arch}" not in who:
                    who.append(f"{study}/{arch}")
    out = []
    for path, (arch, who) in need.items():
        if not path.is_file():
            out.append(Problem("error", f"training: {', '.join(who)} start from ImageNet weights (pretrained: "
                                        f"imagenet), which are not at {path}; nothing is downloaded at run time",
                               f"on a machine with internet access run: {fetch_command(arch, path)} and copy the "
                               f"file to {path} here; or set the preset's weights_file; or pretrained: none"))
    return out
