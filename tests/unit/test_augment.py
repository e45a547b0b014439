"""Stroke-width and elastic augmentation: per image, on whole batches, and in training."""

from pathlib import Path

import pytest
import torch
from helpers.configs import compose_config
from hydra.utils import instantiate

from emnist_lightning.data.augment import RandomAffineBatch, RandomElasticBatch, RandomStrokeWidth
from emnist_lightning.training.run import train


def _bars(n: int) -> torch.Tensor:
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, 4:24, 12:15] = 1.0  # a 3-pixel-wide "1"
    return images


def test_stroke_width_changes_each_image_its_own_way() -> None:
    torch.manual_seed(0)
    images = _bars(64)
    out = RandomStrokeWidth(thinner=0.5, thicker=1.0, p=1.0)(images)
    ink = out.sum(dim=(1, 2, 3))
    assert (ink > images[0].sum() * 1.2).any() and (ink < images[0].sum() * 0.95).any()
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(64))  # brightest pixel stays 1
    assert len(torch.unique(ink.round(decimals=3))) > 30
    assert torch.equal(RandomStrokeWidth(p=0.0)(images), images)


def test_elastic_warp_bends_each_image_differently_and_keeps_the_character() -> None:
    torch.manual_seed(0)
    images = _bars(16)
    out = RandomElasticBatch(alpha=1.0, grid=4, p=1.0)(images)
    assert out.shape == images.shape
    assert (out - images).abs().sum(dim=(1, 2, 3)).min() > 1.0  # every image moved
    assert len({tuple(o.flatten().round(decimals=3).tolist()) for o in out}) == 16
    ink = out.sum(dim=(1, 2, 3)) / images[0].sum()
    assert ((ink > 0.8) & (ink < 1.2)).all()  # a smooth warp, not a shredding
    assert torch.allclose(RandomElasticBatch(p=0.0)(images), images, atol=1e-5)


def test_pens_augmentation_is_affine_then_elastic_then_stroke_width(tmp_path: Path) -> None:
    cfg = compose_config("train", ["data/augment=pens"], tmp_path)
    augment = instantiate(cfg.data.augment)
    kinds = [type(m) for m in augment]
    assert kinds == [RandomAffineBatch, RandomElasticBatch, RandomStrokeWidth]
    assert augment(_bars(8)).shape == (8, 1, 28, 28)


@pytest.mark.slow
def test_a_training_run_with_the_pens_augmentation_completes(make_train_cfg) -> None:
    metrics = train(make_train_cfg("data/augment=pens", "trainer.max_epochs=3"))
    assert metrics["global_step"] == 27 and 0 < metrics["test/loss"] < 10
