"""Issue 28: adding an architecture is one registry entry plus its builder (docs/extending.md). A toy network,
registered at run time, is built, accepted by the config's validation and planned through the whole DAG."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, repo_config

TOY = textwrap.dedent("""
    from torchvision.models.resnet import BasicBlock, ResNet

    from ccgrade.config.architectures import Architecture
    from ccgrade.learn import models

    models.register(Architecture("toynet", 2, "", "a test's toy"), lambda: ResNet(BasicBlock, [1, 1, 1, 1]))
""")


@pytest.fixture
def toy():
    from ccgrade.config import architectures
    from ccgrade.learn import models

    exec(TOY, {})
    yield "toynet"
    architectures.REGISTRY.pop("toynet")
    models.BUILDERS.pop("toynet")


def toy_study(cfg: dict) -> dict:
    cfg["training"]["studies"] = {"cui": {"preset": "demo", "roi": "box", "scheme": "cui", "seeds": [1],
                                          "models": {"toynet": ["cmp"]}}}
    cfg["replace"] = ["training.studies"]
    return cfg


def test_a_registered_toy_builds_and_validates(toy):
    from ccgrade.config import architectures
    from ccgrade.config.studyconfig import validate_config
    from ccgrade.learn import models

    net = models.build_model(toy, in_channels=3).eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    assert "toynet" in architectures.wildcard().split("|")
    validate_config(toy_study(repo_config()))


def test_an_unregistered_name_is_a_config_error():
    from ccgrade.config.studyconfig import validate_config
    from ccgrade.errors import ConfigError

    with pytest.raises(ConfigError, match="toynet"):
        validate_config(toy_study(repo_config()))


def test_a_bad_entry_is_refused():
    from ccgrade.config.architectures import Architecture, register

    with pytest.raises(ValueError, match="lower-case"):
        register(Architecture("Toy-Net", 2))
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        register(Architecture("toy4d", 4))


def test_a_registered_toy_is_planned_through_the_dag(tmp_path):
    """The entry and its builder, registered in the process that runs Snakemake, are all the DAG needs: the
    schema's enum, the {arch} wildcard and the matrix read the registry."""
    import yaml

    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(toy_study({"training": {}})))
    script = TOY + textwrap.dedent(f"""
        import sys
        from snakemake.cli import main

        sys.argv = ["snakemake", "-s", {str(REPO / "Snakefile")!r}, "-d", {str(tmp_path)!r}, "-n", "--cores", "1",
                    "--configfile", {str(tmp_path / "toy.yaml")!r}]
        main()
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "arch=toynet" in out and "rule train_model:" in out, out[-3000:]
    assert "arch=resnet34" not in out  # the study trains the toy only
