import pytest
import torch

from emnist_lightning.data.labels import SPLITS, split_info, to_upright
from emnist_lightning.errors import ConfigError


@pytest.mark.parametrize(
    ("split", "num_classes"),
    [
        ("balanced", 47),
        ("bymerge", 47),
        ("byclass", 62),
        ("letters", 26),
        ("digits", 10),
        ("mnist", 10),
    ],
)
def test_each_split_has_its_number_of_classes(split: str, num_classes: int) -> None:
    assert split_info(split).num_classes == num_classes


def test_balanced_characters_merge_fifteen_lowercase_letters() -> None:
    assert (
        "".join(SPLITS["balanced"].characters) == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
    )


def test_letters_labels_start_at_one_in_the_files() -> None:
    assert SPLITS["letters"].label_offset == 1
    assert SPLITS["letters"].characters[0] == "a"


def test_unknown_split_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="balanced, bymerge, byclass"):
        split_info("everything")


def test_to_upright_swaps_rows_and_columns_of_every_image() -> None:
    stored = torch.arange(2 * 3 * 4).view(2, 1, 3, 4)
    upright = to_upright(stored)
    assert upright.shape == (2, 1, 4, 3)
    assert torch.equal(upright[1, 0, 3, 2], stored[1, 0, 2, 3])
