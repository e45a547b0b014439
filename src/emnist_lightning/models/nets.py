"""Plain nn.Modules that map (B, 1, 28, 28) normalised images to class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(second * 7 * 7, fc1_neurons, bias=False),
            nn.BatchNorm1d(fc1_neurons),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc1_neurons, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
