"""The studies' networks, built on torchvision, with a two-class head.

- ``resnet18`` / ``resnet34`` / ``resnet50``: torchvision ResNets (Li 2D, Cui, Sun/Dai);
- ``se_resnet34``: ResNet34 with a squeeze-and-excitation unit (``torchvision.ops.SqueezeExcitation``,
  reduction 16) in every basic block,
  applied to the residual branch before the addition (Hu et al.; Cui et al.), initialised from ResNet34
  weights wherever shapes match (the SE units start from their own initialisation);
- ``resnet3d18``: torchvision's 3D ResNet-18 (``r3d_18``) for Li's 32³ tumour cubes.
``in_channels`` follows the crops: 1 (one phase), 3 (Sun's stacked phases) or 4 (Cui's four phases
combined). ImageNet weights are never downloaded: ``pretrained: imagenet`` loads torchvision's weight
file from the local torch cache (``$TORCH_HOME/hub/checkpoints``) or from ``weights_file``, and fails
naming the expected file when it is absent; for other channel counts the first convolution's RGB
filters are averaged and repeated. ``freeze_stages`` freezes the stem and the first residual stages (Dai).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from ccgrade.config.architectures import REGISTRY, Architecture, names
from ccgrade.config.architectures import register as register_entry
from ccgrade.learn import weights


class SEBasicBlock(torchvision.models.resnet.BasicBlock):
    """torchvision's BasicBlock with squeeze-and-excitation on the residual branch."""

    def __init__(self, *args, reduction: int = 16, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.conv2.out_channels
        # torchvision's unit (pool -> 1x1 conv fc1 -> ReLU -> fc2 -> sigmoid -> rescale); its parameter names
        # (se.fc1, se.fc2) are those of the unit the project wrote before, so older checkpoints still load
        self.se = torchvision.ops.SqueezeExcitation(c, max(c // reduction, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


def weights_path(arch: str, weights_file: str | None = None) -> Path:
    """Where the ImageNet weights of ``arch`` are expected (the configured file, else the torch cache)."""
    return weights.imagenet_path(arch, weights_file)


def _adapt_first_conv(state: dict, key: str, in_channels: int) -> dict:
    w = state[key]
    if w.shape[1] != in_channels:
        state = dict(state)
        state[key] = w.mean(dim=1, keepdim=True).repeat(1, in_channels, *([1] * (w.dim() - 2))) * (3 / in_channels)
    return state


def _torchvision(name: str):
    return lambda: getattr(torchvision.models, name)(weights=None)


#: each registered architecture's builder (``ccgrade.config.architectures``): the bare network, before its input
#: and output layers are fitted to the crops and the two classes
BUILDERS = {
    "resnet18": _torchvision("resnet18"),
    "resnet34": _torchvision("resnet34"),
    "resnet50": _torchvision("resnet50"),
    "se_resnet34": lambda: torchvision.models.resnet.ResNet(SEBasicBlock, [3, 4, 6, 3]),
    "resnet3d18": lambda: torchvision.models.video.r3d_18(weights=None),
}


def register(arch: Architecture, builder) -> None:
    """Add an architecture: its registry entry and its builder (a function returning the bare torchvision-style
    network: a ResNet-like module with ``conv1``/``fc`` for 2D, ``stem[0]``/``fc`` for 3D)."""
    register_entry(arch)
    BUILDERS[arch.name] = builder


def _load_imagenet(net: nn.Module, arch: str, weights_file: str | None, in_channels: int) -> None:
    path = weights_path(arch, weights_file)
    if not path.exists():
        raise FileNotFoundError(weights.missing_message(arch, path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = _adapt_first_conv(state, "conv1.weight", in_channels)
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("fc.")}
    net.load_state_dict(usable, strict=False)
    net.loaded_keys = sorted(usable)  # for tests and the checkpoint metadata


def build_model(arch: str, in_channels: int = 1, *, pretrained: str = "none", weights_file: str | None = None,
                freeze_stages: int = 0, num_classes: int = 2) -> nn.Module:
    """A two-class network of the studies (see the module docstring)."""
    if arch not in BUILDERS or arch not in REGISTRY:
        raise ValueError(f"unknown architecture {arch!r} (choose from {', '.join(names())})")
    net = BUILDERS[arch]()
    if REGISTRY[arch].dims == 3:
        old = net.stem[0]
        net.stem[0] = nn.Conv3d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        if pretrained != "none":
            raise ValueError(f"{arch}: only pretrained 'none' is supported (no ImageNet weights exist for 3D)")
    else:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if pretrained == "imagenet":
            _load_imagenet(net, arch, weights_file, in_channels)
        elif pretrained != "none":
            raise ValueError(f"pretrained must be 'imagenet' or 'none', not {pretrained!r}")
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    if freeze_stages:
        stages = stage_modules(net)
        for mod in stages[: freeze_stages]:
            for p in mod.parameters():
                p.requires_grad = False
    return net


def stage_modules(net: nn.Module) -> list[nn.Module]:
    """The stem and the four residual stages, in order (what ``freeze_stages`` counts)."""
    stem = net.stem if hasattr(net, "stem") else nn.ModuleList([net.conv1, net.bn1])
    return [stem, net.layer1, net.layer2, net.layer3, net.layer4]


def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer features (after global pooling, before the classifier): (N, features)."""
    head = net.fc
    net.fc = nn.Identity()
    try:
        return net(x)
    finally:
        net.fc = head
