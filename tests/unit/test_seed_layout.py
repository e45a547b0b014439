"""character_recognition.torch works in the seed's own script: its loading (load_state_dict
into its net) and its transforms (EMNIST's stored, transposed images; 0.5/0.5 normalisation),
as benchmarks/seed_recipe.py reproduces them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers.configs import REPO, compose_config

from emnist_lightning.data import datamodule
from emnist_lightning.evaluation.evaluate import evaluate
from emnist_lightning.inference.model_files import (
    CARD_NAME,
    STATE_DICT_NAME,
    export_state_dict,
    load_model,
)
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.models.card import ModelCard
from emnist_lightning.training.run import train


def seed_recipe():
    """benchmarks/seed_recipe.py: the seed's net, transforms, loaders and prediction loop."""
    spec = importlib.util.spec_from_file_location(
        "seed_recipe", REPO / "benchmarks" / "seed_recipe.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_cnn_card(mean: float, std: float) -> ModelCard:
    return ModelCard.from_dict(
        {
            "format_version": 1,
            "net": "seed_cnn",
            "net_params": {"fc1_neurons": 196, "dropout": 0.3},
            "class_names": [chr(ord("A") + i) for i in range(47)],
            "input_mean": mean,
            "input_std": std,
            "image_size": 28,
            "orientation": "upright",
            "foreground": "light-on-dark",
        },
        "test",
    )


@pytest.mark.parametrize(("mean", "std"), [(0.1736, 0.3317), (0.5, 0.5), (0.0, 1.0)])
def test_folding_gives_the_seed_net_the_same_logits_from_the_seeds_inputs(
    mean: float, std: float, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    card = seed_cnn_card(mean, std)
    model = card.build_model().eval()
    export_state_dict(card, model.net, tmp_path)
    seed_net = seed_recipe().SeedNet().eval()
    seed_net.load_state_dict(torch.load(tmp_path / STATE_DICT_NAME, weights_only=True))
    upright = torch.rand(16, 1, 28, 28)
    stored = upright.transpose(-2, -1)  # as EMNIST stores images, as the seed reads them
    with torch.no_grad():
        ours = model(upright).log_softmax(1)
        seeds = seed_net((stored - 0.5) / 0.5)  # the seed's Normalize((0.5,), (0.5,))
        reloaded = load_model(tmp_path / STATE_DICT_NAME).model(upright).log_softmax(1)
    assert torch.allclose(seeds, ours, atol=1e-5)
    assert torch.allclose(reloaded, ours, atol=1e-5)  # and this project still reads it
    written = json.loads((tmp_path / CARD_NAME).read_text())
    assert written["orientation"] == "transposed" and written["format_version"] == 3
    assert (written["input_mean"], written["input_std"]) == (0.5, 0.5)


def test_a_bn_cnn_state_dict_stays_upright(tmp_path: Path) -> None:
    card = ModelCard.from_dict(
        {**seed_cnn_card(0.2, 0.3).to_dict(), "net": "bn_cnn", "net_params": {"widths": [4, 8]}},
        "test",
    )
    model = card.build_model().eval()
    export_state_dict(card, model.net, tmp_path)
    weights = torch.load(tmp_path / STATE_DICT_NAME, weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in model.net.state_dict().items())
    assert json.loads((tmp_path / CARD_NAME).read_text())["orientation"] == "upright"


def test_the_seeds_script_scores_the_exported_file_as_evaluate_scores_the_run(
    make_train_cfg, tiny_emnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(make_train_cfg(output_dir=run))
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")
    evaluated = evaluate(
        compose_config(
            "evaluate",
            [f"ckpt_path={best}", f"data.data_dir={tiny_emnist}", "data.download=false"],
            tmp_path / "evaluate",
        )
    )
    images, labels = datamodule.test_split(
        compose_config("evaluate", [f"data.data_dir={tiny_emnist}"], tmp_path).data
    )
    ours = load_predictor(best).probabilities(images.float().div(255)).argmax(1)

    # The seed's script: its net, torch.load + load_state_dict, its loaders and transforms.
    recipe = seed_recipe()
    model = recipe.SeedNet()
    model.load_state_dict(torch.load(run / STATE_DICT_NAME))
    _, test_loader = recipe.loaders(str(tiny_emnist))
    model.eval()
    with torch.no_grad():
        batches = [(model(x).argmax(1), y) for x, y in test_loader]
    seeds = torch.cat([p for p, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    assert torch.equal(seeds, ours)  # every prediction, in float32
    assert float((seeds == labels).float().mean()) == pytest.approx(evaluated["test/acc"])
    assert evaluated["test/acc"] > 0.2  # a model that learnt something, not chance (1/47)
    # Its own prediction loop runs under bf16 autocast on the CPU, which flips a few near-ties
    # of this barely trained model (2 of 188 images): close, not equal.
    predicted, targets = recipe.predict(model, test_loader, torch.device("cpu"))
    accuracy = float((predicted == targets).float().mean())
    assert accuracy == pytest.approx(evaluated["test/acc"], abs=0.03)
