"""Batch-level augmentation: a different random change per image, in one tensor op each.

Each works on a whole (B, 1, H, W) float batch on whatever device it is on; torchvision's
transforms draw one transform per call, so on a batch every image would get the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.errors import ConfigError


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
            raise ConfigError("augmentation needs degrees >= 0, shear >= 0, 0 <= translate < 1")
        if not 0 < scale[0] <= scale[1]:
            raise ConfigError("augmentation scale must be (low, high) with 0 < low <= high")
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


def _chosen(n: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1, 1) mask: 1 for the images (a share p) that get the change."""
    return (torch.rand(n, 1, 1, 1, device=like.device) < p).to(like.dtype)


class RandomElasticBatch(nn.Module):
    """A smooth random warp per image (Simard et al. 2003): another hand's wobble.

    Displacements are drawn on a coarse `grid` x `grid` lattice (standard deviation `alpha`
    pixels) and interpolated bicubically to every pixel, which makes them smooth in one step
    instead of Simard's Gaussian filtering of per-pixel noise.
    """

    def __init__(self, alpha: float = 1.5, grid: int = 4, p: float = 0.5) -> None:
        super().__init__()
        if alpha < 0 or grid < 2 or not 0 <= p <= 1:
            raise ConfigError("elastic augmentation needs alpha >= 0, grid >= 2, 0 <= p <= 1")
        self.alpha = alpha
        self.grid = grid
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        coarse = torch.randn(n, 2, self.grid, self.grid, device=images.device)
        shift = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
        shift = shift.to(images.dtype) * self.alpha * _chosen(n, self.p, images)
        # Pixels -> grid_sample's [-1, 1] coordinates; (B, H, W, 2) as x, y.
        scale = torch.tensor([2 / width, 2 / height], device=images.device, dtype=images.dtype)
        shift = shift.permute(0, 2, 3, 1) * scale
        ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=images.device)
        xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=images.device)
        identity = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).to(images.dtype)
        return F.grid_sample(
            images, identity + shift, mode="bilinear", padding_mode="zeros", align_corners=False
        )


class RandomStrokeWidth(nn.Module):
    """A thinner or thicker pen per image: a blend towards a 3x3 grey erosion or dilation.

    A change of +1 adds about a pixel on each side of every stroke, -1 removes one; the
    brightest pixel is scaled back to 1 afterwards, as EMNIST scaled its images.
    """

    def __init__(self, thinner: float = 0.5, thicker: float = 1.0, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= thinner <= 1 or thicker < 0 or not 0 <= p <= 1:
            raise ConfigError("stroke-width augmentation needs 0 <= thinner <= 1, thicker >= 0")
        self.thinner = thinner
        self.thicker = thicker
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        change = torch.empty(n, 1, 1, 1, device=images.device, dtype=images.dtype)
        change.uniform_(-self.thinner, self.thicker).mul_(_chosen(n, self.p, images))
        dilated = F.max_pool2d(images, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-images, 3, stride=1, padding=1)
        towards = torch.where(change > 0, dilated, eroded)
        out = images + change.abs() * (towards - images)
        return out / out.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
