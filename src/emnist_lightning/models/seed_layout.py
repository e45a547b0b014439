"""A seed CNN's weights rewritten for the seed script's own inputs, exactly.

The seed script feeds its net EMNIST images as stored (transposed: the character lies on its
side) and normalised with mean 0.5, std 0.5; this project's nets take upright images
normalised with the training data's own mean and std. For the seed CNN both differences fold
into the weights without changing a single prediction:

- normalisation: the first convolution has no padding, so every output sees only real pixels;
  x_ours = x_seed * (0.5 / std) + (0.5 - mean) / std scales its kernels and shifts its bias;
- orientation: a convolution of a transposed image is the transpose of a convolution with
  transposed kernels, and ReLU and 2x2 pooling commute with transposing, so both
  convolutions' kernels are transposed and the first linear layer reads its 20x4x4 inputs in
  transposed order.

The card written with the weights says so (`orientation: transposed`, mean and std 0.5), so
this project still loads the file and predicts from upright images as before, while the
seed's script loads it with `load_state_dict` and gets the same answers from its own
transforms. Other nets keep the upright layout: the seed's script cannot build them anyway.
"""

from __future__ import annotations

import dataclasses

import torch

from emnist_lightning.models.card import ORIENTATION, TRANSPOSED, ModelCard

SEED_MEAN = 0.5
SEED_STD = 0.5
# The seed CNN's last feature maps: 20 channels of 4x4, flattened into fc1.
SEED_FEATURES = (20, 4, 4)


def in_seed_layout(
    card: ModelCard, weights: dict[str, torch.Tensor]
) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """An upright seed CNN's card and weights in the seed script's layout; anything else as is."""
    if card.net != "seed_cnn" or card.orientation != ORIENTATION:
        return card, weights
    folded = {k: v.detach().cpu().double() for k, v in weights.items()}
    conv1 = folded["conv1.weight"]
    folded["conv1.bias"] = folded["conv1.bias"] + conv1.sum(dim=(1, 2, 3)) * (
        (SEED_MEAN - card.input_mean) / card.input_std
    )
    folded["conv1.weight"] = conv1.transpose(-2, -1) * (SEED_STD / card.input_std)
    folded["conv2.weight"] = folded["conv2.weight"].transpose(-2, -1)
    fc1 = folded["fc1.weight"]
    folded["fc1.weight"] = fc1.view(-1, *SEED_FEATURES).transpose(-2, -1).reshape(fc1.shape)
    seed_card = dataclasses.replace(
        card, input_mean=SEED_MEAN, input_std=SEED_STD, orientation=TRANSPOSED
    )
    return seed_card, {k: v.to(weights[k].dtype).contiguous() for k, v in folded.items()}
