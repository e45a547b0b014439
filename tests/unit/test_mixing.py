"""Mixup and CutMix: what each blend is made of, and a real run that trains on them."""

from __future__ import annotations

import pytest
import torch

from emnist_lightning.config_checks import validate_config
from emnist_lightning.errors import ConfigError
from emnist_lightning.models.mixing import CutMix, Mixup
from emnist_lightning.training.run import train


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(16, 1, 28, 28), torch.arange(16)


def test_mixup_blends_each_image_with_the_partner_whose_label_it_returns() -> None:
    images, labels = _batch()
    torch.manual_seed(0)
    mixed = Mixup(alpha=0.4)(images, labels)
    assert 0.0 <= mixed.share <= 1.0 and not torch.equal(mixed.partner_labels, labels)
    partners = images[mixed.partner_labels]  # labels are positions here
    torch.testing.assert_close(mixed.images, mixed.share * images + (1 - mixed.share) * partners)
    assert torch.equal(mixed.labels, labels)


def test_cutmix_pastes_one_box_of_the_partner_and_its_share_is_the_uncovered_area() -> None:
    images, labels = _batch()
    torch.manual_seed(1)
    mixed = CutMix(alpha=1.0)(images, labels)
    partners = images[mixed.partner_labels]
    from_partner = (mixed.images == partners) & (mixed.images != images)
    pasted = from_partner.any(dim=0)[0]  # the same box in every image
    rows, cols = pasted.any(dim=1).nonzero(), pasted.any(dim=0).nonzero()
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert mixed.share == pytest.approx(1 - int(box) / 28**2)
    kept = ~pasted
    assert torch.equal(mixed.images[..., kept], images[..., kept])


def test_mixing_is_drawn_from_torchs_generator_so_a_seed_repeats_it() -> None:
    images, labels = _batch()
    for mixer in (Mixup(0.2), CutMix(1.0)):
        torch.manual_seed(5)
        first = mixer(images, labels)
        torch.manual_seed(5)
        again = mixer(images, labels)
        assert torch.equal(first.images, again.images) and first.share == again.share


@pytest.mark.parametrize("alpha", [0, -1.0])
def test_a_mixer_without_a_positive_alpha_is_refused(alpha: float, make_train_cfg) -> None:
    with pytest.raises(ValueError, match="alpha must be > 0"):
        Mixup(alpha)
    cfg = make_train_cfg("model/mixing=cutmix", f"model.mixing.alpha={alpha}")
    with pytest.raises(ConfigError, match=rf"^model\.mixing\.alpha={alpha} is invalid"):
        validate_config(cfg)


def test_a_run_with_mixup_trains_on_blends_and_records_them(make_train_cfg, tmp_path) -> None:
    losses = {}
    for mixing in ("none", "mixup"):
        chosen = ["model/mixing=mixup", "model.mixing.alpha=1.0"] if mixing == "mixup" else []
        cfg = make_train_cfg(
            "model=bn_cnn",
            "model.net.widths=[4,8]",
            "model.net.fc1_neurons=8",
            "trainer.max_epochs=1",
            "test=false",
            "logger=none",
            *chosen,
            output_dir=tmp_path / mixing,
        )
        train(cfg)
        saved = torch.load(tmp_path / mixing / "checkpoints" / "last.ckpt", weights_only=True)
        losses[mixing] = saved["state_dict"]["model.net.classifier.6.weight"]
        recorded = saved["hyper_parameters"]["mixing"]
        assert recorded == (
            None
            if mixing == "none"
            else {"_target_": "emnist_lightning.models.mixing.Mixup", "alpha": 1.0}
        )
    # Same seed, same batches: only the blending can make the weights differ.
    assert not torch.equal(losses["none"], losses["mixup"])
