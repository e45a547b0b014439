"""Batch-level augmentation: a different small affine warp per image, in one tensor op."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RandomAffineBatch(nn.Module):
    """Random rotation, scale, shear and shift per image of a (B, 1, H, W) float batch.

    torchvision's RandomAffine draws one transform per call, so on a whole batch every
    image would get the same warp; this draws one per image and applies all at once
    with `affine_grid` + `grid_sample`, on whatever device the batch is on.
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
        shear: float = 5.0,
    ) -> None:
        super().__init__()
        if degrees < 0 or shear < 0 or not 0 <= translate < 1:
            raise ValueError("augmentation needs degrees >= 0, shear >= 0, 0 <= translate < 1")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError("augmentation scale must be (low, high) with 0 < low <= high")
        self.degrees = degrees
        self.translate = translate
        self.scale = tuple(scale)
        self.shear = shear

    def _uniform(self, n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
        return torch.empty(n, device=like.device, dtype=like.dtype).uniform_(low, high)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        angle = self._uniform(n, -self.degrees, self.degrees, images) * math.pi / 180
        shear = self._uniform(n, -self.shear, self.shear, images) * math.pi / 180
        scale = self._uniform(n, *self.scale, images)
        shift = self._uniform(2 * n, -self.translate, self.translate, images).view(n, 2) * 2
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # Inverse map (output -> input coordinates) of rotate * shear-x * scale.
        theta = torch.stack(
            [
                torch.stack([cos / scale, (cos * tan - sin) / scale, shift[:, 0]], dim=1),
                torch.stack([sin / scale, (sin * tan + cos) / scale, shift[:, 1]], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
