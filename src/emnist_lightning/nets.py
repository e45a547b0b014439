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
