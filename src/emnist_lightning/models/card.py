"""What a trained model is, as checked plain data, and the one normalising wrapper.

Every model file this project writes (Lightning checkpoint, `model_card.json` beside a
state_dict, ONNX metadata) carries one `ModelCard`: the net's *name* from a closed registry
of this project's nets, its plain hyperparameters, the class characters and the input
conventions. Reading a card checks every field and builds the net by name, so nothing read
from a file is ever imported, instantiated or unpickled, and renaming a module cannot break
a saved model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from emnist_lightning.data.labels import SPLITS
from emnist_lightning.errors import ModelFileError
from emnist_lightning.models.look_alikes import MAX_PAIRS, Pair
from emnist_lightning.models.nets import LEGACY_NET_PATHS, NETS, check_net
from emnist_lightning.models.value_checks import Check, number, one_of, whole

# 2 added test_time_shift (files without it read as 0; cards without shifts are written as 1);
# 3 added orientation "transposed" (weights in the seed script's layout, models/seed_layout.py);
# 4 added look_alikes (files without it read as none; cards without them keep 1 to 3).
FORMAT_VERSION = 4
IMAGE_SIZE = 28
# Test-time augmentation: at most this many pixels of shift (a bigger one moves strokes out).
MAX_TEST_TIME_SHIFT = 3
ORIENTATION = "upright"
# What the net's weights expect: upright images, or EMNIST's raw transposed ones (the seed
# script's). Either way the model takes upright images: the wrapper transposes for the net.
TRANSPOSED = "transposed"
ORIENTATIONS = (ORIENTATION, TRANSPOSED)
FOREGROUND = "light-on-dark"
MAX_CLASSES = 1000
# Where a Lightning checkpoint keeps its card, and where the net's weights sit in its
# state_dict (`model.net.*`; files written before cards kept them under `net.*`).
CHECKPOINT_CARD_KEY = "model_card"
NET_PREFIX = "model.net."
LEGACY_NET_PREFIX = "net."


def check_class_names(value: Any, where: str) -> tuple[str, ...]:
    """Class characters read from `where`: 2 to MAX_CLASSES distinct one-character strings."""
    if (
        not isinstance(value, (list, tuple))
        or not 2 <= len(value) <= MAX_CLASSES
        or not all(isinstance(c, str) and len(c) == 1 for c in value)
        or len(set(value)) != len(value)
    ):
        raise ModelFileError(
            f"{where}: field class_names must be a list of 2 to {MAX_CLASSES} distinct "
            "one-character strings"
        )
    return tuple(value)


def check_look_alikes(value: Any, class_names: tuple[str, ...], where: str) -> tuple[Pair, ...]:
    """Look-alike pairs read from `where`: up to MAX_PAIRS pairs of two different classes."""
    known = set(class_names)
    if (
        isinstance(value, (list, tuple))
        and len(value) <= MAX_PAIRS
        and all(
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and all(isinstance(c, str) and c in known for c in pair)
            and pair[0] != pair[1]
            for pair in value
        )
    ):
        return tuple((pair[0], pair[1]) for pair in value)
    raise ModelFileError(
        f"{where}: field look_alikes must be a list of up to {MAX_PAIRS} pairs of two "
        "different class characters"
    )


def _field(data: Mapping[str, Any], key: str, check: Check, where: str) -> Any:
    if key not in data:
        raise ModelFileError(f"{where}: field {key} is missing")
    value, problem = check(data[key])
    if problem:
        raise ModelFileError(f"{where}: field {key} {problem}")
    return value


INPUT_MEAN = number(-10.0, 10.0)
INPUT_STD = number(0.0, 10.0, open_low=True)
_SPLIT = one_of(*SPLITS)
TEST_TIME_SHIFT = whole(0, MAX_TEST_TIME_SHIFT)


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use a trained model, and nothing that could run."""

    net: str
    net_params: dict[str, Any] = field(hash=False)
    class_names: tuple[str, ...]
    input_mean: float
    input_std: float
    split: str | None = None
    image_size: int = IMAGE_SIZE
    orientation: str = ORIENTATION
    foreground: str = FOREGROUND
    # > 0: predictions average the image and four copies shifted by this many pixels.
    test_time_shift: int = 0
    # Pairs of classes the model mixed up on its validation images (models/look_alikes.py):
    # a fact about the trained weights, so resuming or fine-tuning ignores it.
    look_alikes: tuple[Pair, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def format_version(self) -> int:
        """The oldest format that holds what this card uses, so older releases still read it."""
        if self.look_alikes:
            return 4
        if self.orientation != ORIENTATION:
            return 3
        return 2 if self.test_time_shift else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (also what checkpoints hold)."""
        return {
            "format_version": self.format_version,
            "net": self.net,
            "net_params": dict(self.net_params),
            "class_names": list(self.class_names),
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "split": self.split,
            "image_size": self.image_size,
            "orientation": self.orientation,
            "foreground": self.foreground,
            **({"test_time_shift": self.test_time_shift} if self.test_time_shift else {}),
            **({"look_alikes": [list(p) for p in self.look_alikes]} if self.look_alikes else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelCard:
        """Check every field of a card read from `where` (a file); refuse in one line."""
        if not isinstance(data, Mapping):
            raise ModelFileError(f"{where}: the model card must be a mapping")
        version = _field(data, "format_version", whole(0, 10**6), where)
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{where}: written by a newer version of this project (model card format "
                f"{version}, this one reads up to {FORMAT_VERSION}): upgrade emnist-lightning"
            )
        known = {
            "format_version", "net", "net_params", "class_names", "input_mean", "input_std",
            "split", "image_size", "orientation", "foreground", "test_time_shift", "look_alikes",
        }  # fmt: skip
        unknown = sorted(str(k)[:40] for k in data if k not in known)
        if unknown:
            raise ModelFileError(f"{where}: unknown field {unknown[0]!r} in the model card")
        name, params = check_net(data.get("net"), data.get("net_params"), where)
        split = data.get("split")
        if split is not None:
            split = _field(data, "split", _SPLIT, where)
        class_names = check_class_names(data.get("class_names"), where)
        return cls(
            net=name,
            net_params=params,
            class_names=class_names,
            input_mean=_field(data, "input_mean", INPUT_MEAN, where),
            input_std=_field(data, "input_std", INPUT_STD, where),
            split=split,
            image_size=_field(data, "image_size", one_of(IMAGE_SIZE), where),
            orientation=_field(data, "orientation", one_of(*ORIENTATIONS), where),
            foreground=_field(data, "foreground", one_of(FOREGROUND), where),
            test_time_shift=_field(
                {"test_time_shift": 0, **data}, "test_time_shift", TEST_TIME_SHIFT, where
            ),
            look_alikes=check_look_alikes(data.get("look_alikes", []), class_names, where),
        )

    @classmethod
    def from_legacy(cls, data: Any, where: str) -> ModelCard:
        """A card from a file written before cards (checkpoint hparams or class_mapping.json):
        the net's module path is looked up in a fixed table, its other keys checked."""
        if not isinstance(data, Mapping):
            raise ModelFileError(f"{where}: expected a mapping of the model's settings")
        net = data.get("net")
        if not isinstance(net, Mapping):
            raise ModelFileError(f"{where}: field net is missing or not a mapping")
        target = net.get("_target_")
        name = LEGACY_NET_PATHS.get(target) if isinstance(target, str) else None
        if name is None:
            raise ModelFileError(
                f"{where}: field net._target_ names no net of this project "
                f"(one of {', '.join(LEGACY_NET_PATHS)})"
            )
        params = {k: v for k, v in net.items() if k != "_target_"}
        legacy = {
            "format_version": 0,
            "net": name,
            "net_params": params,
            "class_names": data.get("class_names"),
            "input_mean": data.get("input_mean"),
            "input_std": data.get("input_std"),
            "image_size": IMAGE_SIZE,
            "orientation": ORIENTATION,
            "foreground": FOREGROUND,
        }
        return cls.from_dict(legacy, where)

    def build_net(self) -> nn.Module:
        """A freshly initialised net of this card's architecture."""
        return NETS[self.net].builder(num_classes=self.num_classes, **self.net_params)

    def build_model(self, channels_last: bool = False) -> NormalizedNet:
        """The net behind this card's normalisation: what training, inference and export run."""
        return NormalizedNet(
            self.build_net(),
            self.input_mean,
            self.input_std,
            channels_last,
            self.test_time_shift,
            transposed=self.orientation == TRANSPOSED,
        )

    def differences(self, other: ModelCard) -> list[str]:
        """Human-readable `field: this vs other` for every field that differs."""
        mine = {"test_time_shift": 0, **self.to_dict()}
        theirs = {"test_time_shift": 0, **other.to_dict()}
        diffs = []
        for key in mine:
            if key == "look_alikes":
                continue  # measured on the weights, not a property of the model's shape
            if key == "net_params":
                for name in sorted(set(mine[key]) | set(theirs[key])):
                    a, b = mine[key].get(name), theirs[key].get(name)
                    if a != b:
                        diffs.append(f"net.{name}: {a} vs {b}")
            elif key == "class_names" and mine[key] != theirs[key]:
                diffs.append(f"classes: {len(mine[key])} vs {len(theirs[key])}")
            elif key == "split" and None in (mine[key], theirs[key]):
                continue  # files written before cards did not record their split
            elif mine[key] != theirs[key] and key != "format_version":
                diffs.append(f"{key}: {mine[key]} vs {theirs[key]}")
        return diffs


class NormalizedNet(nn.Module):
    """A net behind the model's own normalisation; takes upright (B, 1, 28, 28) images in
    [0, 1]. Training, every predictor and the ONNX export all run this one wrapper, so the
    normalisation and test-time augmentation live in one place.

    `transposed`: the net's weights expect EMNIST's raw transposed images (the seed script's
    layout); the wrapper turns the upright input for them.

    With `test_time_shift` > 0, evaluation (eval mode) scores each image and four copies
    shifted that many pixels up, down, left and right in one batch, and returns the mean of
    their log-probabilities; training (train mode) sees plain logits.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: float,
        std: float,
        channels_last: bool = False,
        test_time_shift: int = 0,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.mean = float(mean)
        self.std = float(std)
        self.channels_last = channels_last
        self.test_time_shift = int(test_time_shift)
        self.transposed = transposed

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        inputs = (images - self.mean) / self.std
        if self.transposed:
            inputs = inputs.transpose(-2, -1)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.net(inputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training or not self.test_time_shift:
            return self._scores(images)
        views = shifted_views(images, self.test_time_shift)
        log_probs = self._scores(views).float().log_softmax(dim=1)
        return log_probs.unflatten(0, (SHIFTED_VIEWS, -1)).mean(dim=0)


SHIFTED_VIEWS = 5


def shifted_views(images: torch.Tensor, shift: int) -> torch.Tensor:
    """The images and four copies moved `shift` pixels up, down, left and right (the
    background, 0, fills in), stacked as one batch of SHIFTED_VIEWS * B: no flips, characters
    have a side."""
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    height, width = images.shape[-2:]
    corners = [(shift, shift), (0, shift), (2 * shift, shift), (shift, 0), (shift, 2 * shift)]
    return torch.cat(
        [padded[..., top : top + height, left : left + width] for top, left in corners]
    )
