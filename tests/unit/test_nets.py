"""The net registry: every argument checked, one set of checks for configs and model files,
and a new net is one registered class away from training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emnist_lightning.config_checks import validate_config
from emnist_lightning.errors import ConfigError, ModelFileError
from emnist_lightning.models.card import ModelCard
from emnist_lightning.models.nets import (
    DROPOUT,
    NETS,
    BatchNormCNNEnsemble,
    ResidualCNN,
    register,
)
from emnist_lightning.training.run import train


class _Tiny(nn.Module):
    """A linear classifier: the smallest net a test can register."""

    def __init__(self, num_classes: int = 47, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.linear = nn.Linear(28 * 28, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * self.scale


def _train_and_read(cfg, run_dir) -> tuple[dict, ModelCard]:
    """Train a run, then read its last checkpoint as plain data and its model card."""
    train(cfg)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return saved, ModelCard.from_dict(saved["model_card"], "last.ckpt")


def test_a_net_with_an_unchecked_argument_cannot_be_registered() -> None:
    with pytest.raises(TypeError, match=r"give a check for each of \['scale'\]"):
        register("tiny_unchecked")(_Tiny)
    assert "tiny_unchecked" not in NETS


@pytest.mark.parametrize(
    "key, value",
    [("dropout", 1.0), ("dropout", -0.1), ("fc1_neurons", 0), ("fc1_neurons", 5000)],
)
def test_configs_and_model_files_refuse_the_same_net_arguments(
    make_train_cfg, key: str, value: float
) -> None:
    cfg = make_train_cfg(f"model.net.{key}={value}")
    with pytest.raises(ConfigError, match=rf"^model\.net\.{key}={value} is invalid: it must be"):
        validate_config(cfg)
    card = ModelCard("seed_cnn", {"fc1_neurons": 16, "dropout": 0.1, key: value}, ("a", "b"), 0, 1)
    with pytest.raises(ModelFileError, match=rf"field net\.{key} must be"):
        ModelCard.from_dict(card.to_dict(), "card.json")


def test_a_registered_net_trains_and_loads_by_name(make_train_cfg, tmp_path) -> None:
    register("tiny", scale=DROPOUT)(_Tiny)
    try:
        cfg = make_train_cfg(
            "~model.net",
            "+model.net={name: tiny, scale: 0.5}",
            "trainer.max_epochs=1",
            "test=false",
            "logger=none",
            output_dir=tmp_path / "run",
        )
        saved, card = _train_and_read(cfg, tmp_path / "run")
        assert (card.net, card.net_params) == ("tiny", {"scale": 0.5})
        assert isinstance(card.build_net(), _Tiny)
        with pytest.raises(ConfigError, match="model.net.scale=2 is invalid"):
            validate_config(make_train_cfg("~model.net", "+model.net={name: tiny, scale: 2}"))
    finally:
        NETS.pop("tiny", None)


def test_an_ensemble_trains_each_member_on_its_own_loss_and_predicts_their_mean(
    make_train_cfg, tmp_path
) -> None:
    net = BatchNormCNNEnsemble(num_classes=5, members=3, widths=(4, 8), fc1_neurons=8)
    images = torch.rand(6, 1, 28, 28)
    net.train()
    assert net(images).shape == (18, 5) and net.outputs_per_image == 3
    net.eval()
    members = torch.stack([m(images).log_softmax(1) for m in net.members])
    assert net.outputs_per_image == 1
    torch.testing.assert_close(net(images), members.mean(0))
    # A real run: the classifier repeats the labels per member, and every member learns.
    cfg = make_train_cfg(
        "model=bn_cnn_ensemble",
        "model.net.widths=[4,8]",
        "model.net.fc1_neurons=8",
        "trainer.max_epochs=1",
        "logger=none",
        output_dir=tmp_path / "run",
    )
    saved, card = _train_and_read(cfg, tmp_path / "run")
    assert (card.net, card.net_params["members"]) == ("bn_cnn_ensemble", 2)
    weights = {k: v for k, v in saved["state_dict"].items() if k.endswith("classifier.6.weight")}
    first, second = weights.values()
    assert len(weights) == 2 and not torch.equal(first, second)


def test_the_residual_net_adds_each_blocks_input_and_trains_from_the_command_line_config(
    make_train_cfg, tmp_path
) -> None:
    net = ResidualCNN(num_classes=5, widths=(8, 8, 16), blocks=(1, 2, 1), fc1_neurons=8)
    images = torch.rand(3, 1, 28, 28)
    assert net(images).shape == (3, 5)
    stem, first, *rest = net.features
    assert len(rest) == 3  # stages of 1, 2 and 1 blocks
    # With its body silenced, a block passes its input through the shortcut: relu(x).
    for layer in first.body[-1].parameters():
        torch.nn.init.zeros_(layer)
    first.eval()
    inputs = torch.randn(2, 8, 28, 28)
    torch.testing.assert_close(first(inputs), torch.relu(inputs))
    # Stride-2 blocks halve the image: 28 -> 14 -> 7.
    assert net.features(images).shape == (3, 16, 7, 7)
    cfg = make_train_cfg(
        "model=res_cnn",
        "model.net.widths=[8,8,8]",
        "model.net.fc1_neurons=8",
        "trainer.max_epochs=1",
        "logger=none",
        output_dir=tmp_path / "run",
    )
    saved, card = _train_and_read(cfg, tmp_path / "run")
    assert (card.net, card.net_params["blocks"]) == ("res_cnn", [1, 2, 2])


@pytest.mark.parametrize(
    ("model", "widths", "expected"),
    [
        ("bn_cnn", "[8,8,8]", "list of 2 whole numbers in \\[1, 256\\]"),
        ("res_cnn", "[8,8]", "list of 3 whole numbers in \\[8, 256\\]"),
        ("res_cnn", "[4,8,8]", "list of 3 whole numbers in \\[8, 256\\]"),
    ],
)
def test_each_net_checks_its_own_widths(make_train_cfg, model, widths, expected) -> None:
    cfg = make_train_cfg(f"model={model}", f"model.net.widths={widths}", "logger=none")
    # Refused in one line, by the combined config rule or, when another net takes the value,
    # by the named net's own check.
    with pytest.raises(ConfigError, match=rf"^model\.net.*widths.* must be .*{expected}"):
        train(cfg)
    with pytest.raises(ConfigError, match=r"^model\.net\.widths=\[4\] is invalid"):
        validate_config(make_train_cfg(f"model={model}", "model.net.widths=[4]"))
