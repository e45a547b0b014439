"""Look-alike pairs measured from a confusion matrix, recorded in the card, offered to users."""

from __future__ import annotations

import pytest
import torch

from emnist_lightning.errors import ModelFileError
from emnist_lightning.models.card import ModelCard
from emnist_lightning.models.look_alikes import look_alike_pairs, look_alikes_to_offer

NAMES = ["0", "O", "1", "I", "L", "A"]


def _confusion(cells: dict[tuple[str, str], int], per_class: int = 100) -> torch.Tensor:
    """Counts with `per_class` images per true class; `cells` moves some to other classes."""
    counts = torch.zeros(len(NAMES), len(NAMES), dtype=torch.long)
    for i in range(len(NAMES)):
        counts[i, i] = per_class
    for (true, predicted), n in cells.items():
        t, p = NAMES.index(true), NAMES.index(predicted)
        counts[t, t] -= n
        counts[t, p] += n
    return counts


def test_pairs_are_the_classes_mixed_up_often_worst_first() -> None:
    confusion = _confusion({("O", "0"): 45, ("I", "1"): 20, ("L", "1"): 12, ("A", "L"): 3})
    assert look_alike_pairs(confusion, NAMES) == (("0", "O"), ("1", "I"), ("1", "L"))


def test_a_few_mistakes_in_a_small_class_make_no_pair() -> None:
    confusion = _confusion({("O", "0"): 2}, per_class=8)  # 25%, but only two images
    assert look_alike_pairs(confusion, NAMES) == ()
    assert look_alike_pairs(_confusion({("O", "0"): 5}, per_class=8), NAMES) == (("0", "O"),)


PAIRS = [("0", "O"), ("1", "I"), ("1", "L")]


@pytest.mark.parametrize(
    ("top", "offered"),
    [
        ([("0", 0.6), ("O", 0.3), ("D", 0.05)], ["0", "O"]),
        ([("I", 0.5), ("A", 0.2), ("1", 0.15), ("L", 0.1)], ["I", "1", "L"]),
        ([("0", 0.97), ("O", 0.02), ("D", 0.01)], []),  # O too unlikely to ask about
        ([("A", 0.7), ("0", 0.2), ("O", 0.1)], []),  # the answer itself has no look-alike
        ([("0", 1.0)], []),
    ],
)
def test_look_alikes_are_offered_beside_the_answer(top, offered) -> None:
    assert look_alikes_to_offer(top, PAIRS) == offered


def _card(**changes) -> ModelCard:
    fields = dict(
        net="seed_cnn",
        net_params={},
        class_names=tuple(NAMES),
        input_mean=0.17,
        input_std=0.33,
    )
    return ModelCard(**{**fields, **changes})


def test_the_card_keeps_its_look_alikes_and_old_readers_still_read_cards_without() -> None:
    card = _card(look_alikes=(("0", "O"), ("1", "I")))
    data = card.to_dict()
    assert data["format_version"] == 4 and data["look_alikes"] == [["0", "O"], ["1", "I"]]
    assert ModelCard.from_dict(data, "card.json") == card
    assert _card().to_dict()["format_version"] == 1 and "look_alikes" not in _card().to_dict()
    assert card.differences(_card()) == []  # measured on weights: resuming ignores them


@pytest.mark.parametrize(
    "look_alikes",
    [[["0", "Q"]], [["0", "0"]], [["0"]], "0O", [["0", "O"]] * 65, [[0, 1]]],
)
def test_a_card_with_bad_look_alikes_is_refused(look_alikes) -> None:
    data = {**_card().to_dict(), "format_version": 4, "look_alikes": look_alikes}
    with pytest.raises(ModelFileError, match="field look_alikes must be"):
        ModelCard.from_dict(data, "card.json")
