"""This project's nets, and the closed registry that names them.

Each net is a plain nn.Module mapping (B, 1, 28, 28) normalised images to class logits,
registered under a name with a check for every constructor argument (`@register`). Model
files and configs name a net and give its arguments as plain data; `check_net` checks them
here, so nothing read from a file is ever imported or instantiated by path. Adding a net:
one class below with `@register`, and one `conf/model/<name>.yaml` whose `net.name` is it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.errors import ModelFileError
from emnist_lightning.models.value_checks import Check, number, whole, whole_list

DROPOUT = number(0.0, 1.0, open_high=True)
# Caps keep a hostile model file from allocating gigabytes before its weights are checked.
NEURONS = whole(1, 4096)
CHANNELS = whole_list(2, 1, 256)
# At least 8: torch 2.14's CPU kernels corrupt memory in the backward pass of a channels_last
# stride-2 block that opens from fewer channels (seen with 4 and 6 on an AVX2 machine).
STAGE_CHANNELS = whole_list(3, 8, 256)
STAGE_BLOCKS = whole_list(3, 1, 4)
MEMBERS = whole(1, 8)


@dataclass(frozen=True)
class NetEntry:
    """A registered net: its class and the check of every constructor argument."""

    builder: type[nn.Module]
    params: Mapping[str, Check]


# The closed registry: the only nets a model file or config can name (filled by @register).
NETS: dict[str, NetEntry] = {}
# Files written before model cards named nets by module path: looked up here, never imported.
LEGACY_NET_PATHS = {
    "emnist_lightning.nets.SeedCNN": "seed_cnn",
    "emnist_lightning.nets.BatchNormCNN": "bn_cnn",
}


def register(name: str, **params: Check) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register a net class under `name` with a check for each of its constructor arguments
    but `num_classes` (which the model card's class list gives); a missing check is an error
    at import, so no argument can reach a net unchecked."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        arguments = set(inspect.signature(cls).parameters) - {"num_classes"}
        if set(params) != arguments:
            raise TypeError(
                f"@register({name!r}) of {cls.__name__}: give a check for each of "
                f"{sorted(arguments)}, no more"
            )
        if name in NETS:
            raise ValueError(f"a net named {name!r} is registered already")
        NETS[name] = NetEntry(cls, dict(params))
        return cls

    return add


def param_problem(name: str, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first argument of registered net `name` in `params` that fails its check, with
    what it must be; None when every given argument passes."""
    for key, check in NETS[name].params.items():
        if key in params:
            problem = check(params[key])[1]
            if problem:
                return key, problem
    return None


def check_net(name: Any, params: Any, where: str) -> tuple[str, dict[str, Any]]:
    """A registry name and its checked arguments; `where` names the file or config key."""
    if not isinstance(name, str) or name not in NETS:
        shown = repr(name) if isinstance(name, str) and len(name) < 80 else type(name).__name__
        raise ModelFileError(
            f"{where}: net {shown} is not a net of this project (one of {', '.join(NETS)})"
        )
    if not isinstance(params, Mapping):
        raise ModelFileError(f"{where}: the net's parameters must be a mapping of plain values")
    entry = NETS[name]
    unknown = sorted(str(k)[:40] for k in params if k not in entry.params)
    if unknown:
        raise ModelFileError(
            f"{where}: net '{name}' has no parameter {unknown[0]!r} "
            f"(it takes {', '.join(entry.params)})"
        )
    failed = param_problem(name, params)
    if failed:
        raise ModelFileError(f"{where}: field net.{failed[0]} {failed[1]}")
    return name, {
        key: check(params[key])[0] for key, check in entry.params.items() if key in params
    }


@register("seed_cnn", fc1_neurons=NEURONS, dropout=DROPOUT)
class SeedCNN(nn.Module):
    """The seed script's CNN, layer for layer, except that it returns logits.

    The seed applied log_softmax before CrossEntropyLoss, which applies it again; the
    loss still trains but the doubled normalisation is pointless, so logits it is.
    """

    def __init__(
        self, num_classes: int = 47, fc1_neurons: int = 196, dropout: float = 0.34
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(p=dropout)
        self.fc1 = nn.Linear(320, fc1_neurons)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(fc1_neurons, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _hidden_layer_head(
    features: int, fc1_neurons: int, dropout: float, num_classes: int
) -> nn.Sequential:
    """Flattened feature maps -> a batch-norm hidden layer -> logits (the one matrix Muon
    trains in MuonWithAdamW); the layer indices are the state_dict keys of saved models."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(features, fc1_neurons, bias=False),
        nn.BatchNorm1d(fc1_neurons),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(fc1_neurons, num_classes),
    )


@register("bn_cnn", widths=CHANNELS, fc1_neurons=NEURONS, dropout=DROPOUT)
class BatchNormCNN(nn.Module):
    """A small VGG-style CNN with batch norm: two 3x3 conv pairs, each halving the image,
    then a hidden layer. Much more accurate than the seed CNN for a few times its compute."""

    def __init__(
        self,
        num_classes: int = 47,
        widths: tuple[int, int] = (32, 64),
        fc1_neurons: int = 256,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        first, second = widths
        self.features = nn.Sequential(
            _conv_bn_relu(1, first),
            _conv_bn_relu(first, first),
            nn.MaxPool2d(2),
            _conv_bn_relu(first, second),
            _conv_bn_relu(second, second),
            nn.MaxPool2d(2),
        )
        self.classifier = _hidden_layer_head(second * 7 * 7, fc1_neurons, dropout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _ResidualBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers whose output is added to the input (through a 1x1
    conv when the block changes width or halves the image): relu(F(x) + x)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


@register(
    "res_cnn", widths=STAGE_CHANNELS, blocks=STAGE_BLOCKS, fc1_neurons=NEURONS, dropout=DROPOUT
)
class ResidualCNN(nn.Module):
    """A small ResNet sized for two CPU cores: a 3x3 stem, then three stages of residual
    blocks at 28, 14 and 7 pixels (the later two open with a stride-2 block), then
    `bn_cnn`'s hidden layer. Deeper than `bn_cnn` for less width: 16/32/64 channels with
    1/2/2 blocks cost about 1.4x a 24/48 `bn_cnn`'s training step here."""

    def __init__(
        self,
        num_classes: int = 47,
        widths: tuple[int, int, int] = (16, 32, 64),
        blocks: tuple[int, int, int] = (1, 2, 2),
        fc1_neurons: int = 256,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(1, widths[0])]
        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(_ResidualBlock(channels, width, stride))
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = _hidden_layer_head(channels * 7 * 7, fc1_neurons, dropout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("bn_cnn_ensemble", members=MEMBERS, widths=CHANNELS, fc1_neurons=NEURONS, dropout=DROPOUT)
class BatchNormCNNEnsemble(nn.Module):
    """Several BatchNormCNNs trained side by side, each on its own loss; they predict together.

    Members differ only in their random start, and their mistakes differ enough that the
    average of their log-probabilities beats any one of them. In training the net returns every
    member's logits stacked member by member, (members * B, classes), so that the classifier
    trains each on its own loss (`outputs_per_image`); otherwise the average, (B, classes), so
    every predictor, evaluator and exporter sees one ordinary net.
    """

    def __init__(
        self,
        num_classes: int = 47,
        members: int = 2,
        widths: tuple[int, int] = (24, 48),
        fc1_neurons: int = 256,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            BatchNormCNN(num_classes, widths, fc1_neurons, dropout) for _ in range(members)
        )

    @property
    def outputs_per_image(self) -> int:
        return len(self.members) if self.training else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([member(x) for member in self.members])
        if self.training:
            return logits.flatten(0, 1)
        return logits.float().log_softmax(dim=-1).mean(dim=0)
