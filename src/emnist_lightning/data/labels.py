"""EMNIST splits: class index <-> character, and the one place images are turned upright."""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch

from emnist_lightning.errors import CheckpointError, ConfigError

# The 15 lowercase letters that EMNIST merges into their look-alike capitals.
MERGED_LOWERCASE = frozenset("cijklmopsuvwxyz")


@dataclass(frozen=True)
class SplitInfo:
    """What a user of a split needs: its characters and how raw labels map onto them."""

    name: str
    characters: tuple[str, ...]
    # Raw IDX labels minus this offset give class indices 0..num_classes-1
    # (the `letters` split labels a..z as 1..26).
    label_offset: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.characters)


_BY_CLASS = tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase)
_BY_MERGE = tuple(c for c in _BY_CLASS if c not in MERGED_LOWERCASE)

SPLITS: dict[str, SplitInfo] = {
    "balanced": SplitInfo("balanced", _BY_MERGE),
    "bymerge": SplitInfo("bymerge", _BY_MERGE),
    "byclass": SplitInfo("byclass", _BY_CLASS),
    "letters": SplitInfo("letters", tuple(string.ascii_lowercase), label_offset=1),
    "digits": SplitInfo("digits", tuple(string.digits)),
    "mnist": SplitInfo("mnist", tuple(string.digits)),
}


def split_info(split: str) -> SplitInfo:
    """Look up a split, failing with the list of valid names."""
    try:
        return SPLITS[split]
    except KeyError:
        valid = ", ".join(SPLITS)
        raise ConfigError(f"unknown EMNIST split '{split}': use one of {valid}") from None


def to_upright(images: torch.Tensor) -> torch.Tensor:
    """Turn EMNIST's stored (transposed) images upright; swaps the last two axes.

    EMNIST keeps each character transposed in its IDX files and torchvision returns them
    as stored. Every image that reaches a model, a plot or an export goes through here
    exactly once, so a user's upright drawing means the same as a training image.
    """
    return images.transpose(-2, -1)


def check_split_matches(class_names: list[str], split: str) -> None:
    """Refuse to score a model on a split whose classes it was not trained for."""
    info = split_info(split)
    if list(info.characters) != list(class_names):
        raise CheckpointError(
            f"the model has {len(class_names)} classes but data.split={split} has "
            f"{info.num_classes}: set data.split to the split it was trained on"
        )


def class_of_character(character: str, class_names: tuple[str, ...] | list[str]) -> str | None:
    """The class a typed character belongs to: itself, or for a lowercase letter EMNIST merged
    into its capital (o, s, z, ...) that capital when the classes have no lowercase of it;
    None when it is no class of the model."""
    if len(character) != 1:
        return None
    if character in class_names:
        return character
    if character in MERGED_LOWERCASE and character.upper() in class_names:
        return character.upper()
    return None
