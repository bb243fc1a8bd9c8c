"""The studies' networks: shapes, SE blocks, ImageNet loading from a local file only, freezing."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ccgrade.learn import models


@pytest.mark.parametrize("arch, shape", [("resnet18", (2, 1, 64, 64)), ("resnet34", (2, 3, 64, 64)),
                                         ("resnet50", (2, 4, 64, 64)), ("se_resnet34", (2, 1, 64, 64)),
                                         ("resnet3d18", (2, 1, 16, 16, 16))])
def test_two_class_outputs(arch, shape):
    torch.manual_seed(0)
    net = models.build_model(arch, in_channels=shape[1]).eval()
    with torch.no_grad():
        out = net(torch.randn(*shape))
        emb = models.embed(net, torch.randn(*shape))
    assert out.shape == (2, 2)
    assert emb.shape == (2, {"resnet50": 2048}.get(arch, 512))
    assert isinstance(net.fc, torch.nn.Linear)  # embed() restores the head


def test_se_resnet34_has_se_in_every_block_with_reduction_16():
    net = models.build_model("se_resnet34")
    blocks = [m for m in net.modules() if isinstance(m, models.SEBasicBlock)]
    assert len(blocks) == 3 + 4 + 6 + 3
    for b in blocks:
        c = b.conv2.out_channels
        assert b.se.fc1.out_channels == c // 16 and b.se.fc2.out_channels == c
    # SE adds 2 * C^2 / 16 + C / 16 + C parameters per block on top of ResNet34
    extra = sum(2 * b.conv2.out_channels ** 2 // 16 + b.conv2.out_channels // 16 + b.conv2.out_channels for b in blocks)
    base = sum(p.numel() for p in models.build_model("resnet34").parameters())
    assert sum(p.numel() for p in net.parameters()) == base + extra


class OldSqueezeExcitation(torch.nn.Module):
    """The SE unit the project wrote before it used torchvision's (checkpoints of that time hold these)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(channels, max(channels // reduction, 1), 1)
        self.fc2 = torch.nn.Conv2d(max(channels // reduction, 1), channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


def test_se_unit_is_torchvisions_and_old_checkpoints_still_load(monkeypatch):
    """The SE block is torchvision.ops.SqueezeExcitation; a checkpoint saved with the former hand-written
    unit loads strictly (same parameter names) and gives the same logits."""
    net = models.build_model("se_resnet34")
    assert all(isinstance(b.se, torchvision.ops.SqueezeExcitation) for b in net.modules() if isinstance(b, models.SEBasicBlock))
    # build the old network: the same blocks with the old unit swapped in, seeded, and save its weights
    torch.manual_seed(4)
    old = models.build_model("se_resnet34").eval()
    for b in old.modules():
        if isinstance(b, models.SEBasicBlock):
            c = b.conv2.out_channels
            b.se = OldSqueezeExcitation(c)
    state = old.state_dict()
    new = models.build_model("se_resnet34").eval()
    new.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=1e-5, atol=1e-6)


def test_imagenet_weights_from_local_file_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match=r"resnet34-.*\.pth.*nothing is downloaded"):
        models.build_model("resnet34", pretrained="imagenet")
    # a stand-in "ImageNet" file: a seeded torchvision ResNet34 saved where torchvision would cache it
    torch.manual_seed(1)
    ref = torchvision.models.resnet34(weights=None)
    path = models.weights_path("resnet34")
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    se = models.build_model("se_resnet34", in_channels=1, pretrained="imagenet")
    assert torch.equal(se.layer3[2].conv1.weight, ref.layer3[2].conv1.weight)
    assert torch.equal(se.layer1[0].bn2.running_var, ref.layer1[0].bn2.running_var)
    # one input channel: the RGB filters averaged (and rescaled so that a grey image gives the same response)
    torch.testing.assert_close(se.conv1.weight, ref.conv1.weight.mean(1, keepdim=True) * 3)
    assert not any(k.startswith("fc.") or ".se." in k for k in se.loaded_keys)
    r3 = models.build_model("resnet34", in_channels=3, pretrained="imagenet", weights_file=str(path))
    assert torch.equal(r3.conv1.weight, ref.conv1.weight)


def test_freeze_first_stages():
    net = models.build_model("resnet50", freeze_stages=3)
    st = models.stage_modules(net)
    assert all(not p.requires_grad for m in st[:3] for p in m.parameters())
    assert all(p.requires_grad for m in st[3:] for p in m.parameters()) and net.fc.weight.requires_grad


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        models.build_model("vgg16")


def test_the_architecture_registry_drives_builders_schema_wildcard_and_weights():
    """Issue 28: one table (ccgrade.config.architectures) and everything that names architectures agrees with it: the
    builders, the config schema's enum, the Snakefile's {arch} wildcard, the ImageNet weight files (torchvision's
    own URLs) and the 2D/3D pairing with ROI kinds."""
    import re

    import yaml

    from ccgrade.config import architectures
    from ccgrade.learn import weights
    from conftest import REPO

    from ccgrade.config.studyconfig import config_schema

    names = set(architectures.REGISTRY)
    assert set(models.BUILDERS) == names and set(architectures.names()) == names
    # the schema names no architecture itself: its enum is the registry's, filled in when it is read
    raw = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    models_key = raw["properties"]["training"]["properties"]["studies"]["additionalProperties"]["properties"]["models"]
    assert models_key["propertyNames"] == {"$ref": "#/$defs/architecture"} and "enum" not in raw["$defs"]["architecture"]
    assert set(config_schema()["$defs"]["architecture"]["enum"]) == names
    assert "arch=ccarch.wildcard()" in (REPO / "workflow/rules/common.smk").read_text()
    assert all(re.fullmatch(architectures.wildcard(), n) for n in names)
    assert set(weights.imagenet_urls()) == {n for n, a in architectures.REGISTRY.items() if a.imagenet_url}
    for name, a in architectures.REGISTRY.items():
        net = models.build_model(name, in_channels=2).eval()
        shape = (1, 2, 16, 32, 32) if a.dims == 3 else (1, 2, 32, 32)
        assert net(torch.zeros(shape)).shape == (1, 2), name
        if a.imagenet_url:  # the file torchvision itself names for the weights it would load
            enum_name = {"resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50",
                         "se_resnet34": "ResNet34"}[name]
            assert a.imagenet_url == getattr(torchvision.models, f"{enum_name}_Weights").IMAGENET1K_V1.url
