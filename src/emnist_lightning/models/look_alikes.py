"""Look-alike characters: pairs a trained model mixes up on its validation images, and when
an answer should be put to the user as a question ("O or 0?").

The pairs are measured, not listed: EMNIST's writers draw O and 0, I, 1 and L, q, g and 9
alike, and which pairs a model cannot tell apart depends on the model and the data. Training
records them in the model card from each validation pass's confusion matrix, so every model
file carries its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# A pair is a look-alike when at least this share of either class's validation images is read
# as the other, and at least MIN_CONFUSIONS images were mixed up between them (so that one
# mistake in a class with a handful of validation images makes no pair). On the proxy data's
# validation split, experiment=fast's model gives 1/L 46%, F/f 40%, 9/q 33%, 1/I 32%, 0/O 30%,
# 9/g 20%, I/L 15%, 2/Z 13%, 4/H, 8/g and g/q 12%, 5/S 11%; the next pairs, under 10%, are
# mostly one to four mistakes in a small class (Q/a 4, f/t 3).
MIN_CONFUSION_RATE = 0.10
MIN_CONFUSIONS = 5
# A card records at most this many pairs (the worst first).
MAX_PAIRS = 64
# A look-alike is offered beside the top answer when the model gives it at least this
# probability.
MIN_OFFERED_PROBABILITY = 0.05

Pair = tuple[str, str]


def look_alike_pairs(
    confusion: torch.Tensor,
    class_names: Sequence[str],
    min_rate: float = MIN_CONFUSION_RATE,
    min_count: int = MIN_CONFUSIONS,
) -> tuple[Pair, ...]:
    """Pairs of classes mixed up in a (true x predicted) count matrix, the worst first."""
    counts = confusion.to(torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    worst = torch.maximum(rates, rates.T)
    mixed = counts + counts.T
    found: list[tuple[float, Pair]] = []
    for a in range(len(class_names)):
        for b in range(a + 1, len(class_names)):
            if worst[a, b] >= min_rate and mixed[a, b] >= min_count:
                found.append((float(worst[a, b]), (class_names[a], class_names[b])))
    found.sort(key=lambda item: -item[0])
    return tuple(pair for _, pair in found[:MAX_PAIRS])


def look_alikes_to_offer(
    top: Sequence[tuple[str, float]],
    pairs: Sequence[Pair],
    min_probability: float = MIN_OFFERED_PROBABILITY,
) -> list[str]:
    """The characters to put to the user, best first, or [] when the answer stands alone.

    The top answer and every further candidate that is a look-alike of one already taken and
    has at least `min_probability`: "O or 0?", or "1, I or L?".
    """
    if len(top) < 2:
        return []
    linked = {frozenset(pair) for pair in pairs}
    offered = [top[0][0]]
    for character, probability in top[1:]:
        if probability < min_probability:
            break
        if any(frozenset((character, taken)) in linked for taken in offered):
            offered.append(character)
    return offered if len(offered) > 1 else []
