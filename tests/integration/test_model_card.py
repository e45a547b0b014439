"""Model files are data, never code: the model card, its checks, old files, hostile files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.configs import compose_config
from helpers.emnist_fixtures import write_emnist_fixture
from PIL import Image

from emnist_lightning.errors import ConfigError, ModelFileError, UserError
from emnist_lightning.evaluation.evaluate import evaluate
from emnist_lightning.inference.export import export, export_onnx
from emnist_lightning.inference.model_files import CARD_NAME, STATE_DICT_NAME, load_checkpoint_model
from emnist_lightning.inference.predict import predict
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.models.card import ModelCard
from emnist_lightning.models.nets import NETS
from emnist_lightning.training.run import train

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "fixtures" / "legacy_v0"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_emnist_fixture(tmp_path_factory.mktemp("data"), train_per_class=6)


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real run: its checkpoints, state_dict + model_card.json."""
    run = tmp_path_factory.mktemp("run") / "run"
    cfg = compose_config(
        "train",
        [
            f"data.data_dir={data_dir}",
            "data.download=false",
            "model.net.fc1_neurons=16",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "test=false",
            "logger=none",
        ],
        run,
    )
    train(cfg)
    return run


def _card(**changes) -> dict:
    card = ModelCard(
        net="seed_cnn",
        net_params={"fc1_neurons": 16, "dropout": 0.3},
        class_names=tuple("0123456789"),
        input_mean=0.2,
        input_std=0.3,
        split="digits",
    ).to_dict()
    card.update(changes)
    return card


def test_card_round_trips_through_plain_data_and_builds_its_net() -> None:
    data = _card()
    card = ModelCard.from_dict(json.loads(json.dumps(data)), "card.json")
    assert card.to_dict() == data
    net = card.build_net()
    assert net.fc1.out_features == 16 and net.fc2.out_features == 10
    assert set(NETS) == {"seed_cnn", "bn_cnn", "res_cnn", "bn_cnn_ensemble"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"net": "os.system"}, "net 'os.system' is not a net of this project"),
        ({"net_params": {"fc1_neurons": 16.5, "dropout": 0.3}}, "field net.fc1_neurons"),
        ({"net_params": {"fc1_neurons": True, "dropout": 0.3}}, "field net.fc1_neurons"),
        ({"net_params": {"fc1_neurons": 16, "dropout": float("nan")}}, "field net.dropout"),
        ({"net_params": {"fc1_neurons": 16, "bias": 1}}, "has no parameter 'bias'"),
        ({"class_names": ["0", "1", "12"]}, "field class_names"),
        ({"class_names": ["0", 1]}, "field class_names"),
        ({"class_names": ["0", "0"]}, "field class_names"),
        ({"input_std": 0.0}, "field input_std"),
        ({"input_mean": float("inf")}, "field input_mean"),
        ({"split": "everything"}, "field split"),
        ({"image_size": 32}, "field image_size"),
        ({"orientation": "sideways"}, "field orientation"),
        ({"format_version": 99}, "written by a newer version"),
        ({"format_version": "1"}, "field format_version"),
        ({"test_time_shift": 4}, "field test_time_shift"),
        ({"test_time_shift": 1.0}, "field test_time_shift"),
        ({"extra": {"_target_": "builtins.open"}}, "unknown field 'extra'"),
    ],
)
def test_every_card_field_is_checked_and_refused_in_one_line(changes: dict, field: str) -> None:
    with pytest.raises(ModelFileError) as error:
        ModelCard.from_dict(_card(**changes), "bad.json")
    message = str(error.value)
    assert message.startswith("bad.json: ") and field in message and "\n" not in message


def test_cards_without_shifts_stay_format_1_and_read_as_unshifted() -> None:
    plain = _card()
    assert plain["format_version"] == 1 and "test_time_shift" not in plain  # older releases read it
    assert ModelCard.from_dict(plain, "v1.json").test_time_shift == 0
    shifted = ModelCard.from_dict(_card(test_time_shift=1), "card").to_dict()
    assert shifted["format_version"] == 2 and shifted["test_time_shift"] == 1


def test_test_time_shifts_average_five_shifted_views_in_eval_mode_only() -> None:
    card = ModelCard.from_dict(_card(test_time_shift=1), "card")
    torch.manual_seed(0)
    model = card.build_model()
    images = torch.zeros(3, 1, 28, 28)
    images[:, :, 10:18, 12:15] = torch.rand(3, 1, 8, 3)
    model.train()
    torch.manual_seed(1)
    plain_logits = model(images)
    torch.manual_seed(1)
    assert torch.equal(plain_logits, model._scores(images))  # training: no views
    model.eval()
    with torch.inference_mode():
        views = [
            torch.roll(images, shifts=shift, dims=dims)  # the background is 0: a roll is a shift
            for shift, dims in ((0, 2), (-1, 2), (1, 2), (-1, 3), (1, 3))
        ]
        expected = torch.stack([model._scores(v).log_softmax(1) for v in views]).mean(0)
        assert torch.allclose(model(images), expected, atol=1e-5)
        assert not torch.allclose(model(images), model._scores(images).log_softmax(1))


def test_a_run_with_test_time_shifts_records_them_and_every_predictor_uses_them(
    make_train_cfg,
) -> None:
    cfg = make_train_cfg("model.test_time_shift=1", "trainer.max_epochs=1")
    train(cfg)
    output = Path(cfg.paths.output_dir)
    (best,) = (output / "checkpoints").glob("epoch_*.ckpt")
    loaded = load_checkpoint_model(best)
    assert loaded.card.test_time_shift == 1 and loaded.model.test_time_shift == 1
    images = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():
        unshifted = loaded.model._scores(images).softmax(1)
        shifted = loaded.model(images).softmax(1)
    assert not torch.allclose(shifted, unshifted)
    for path in (best, output / "character_recognition.torch"):
        assert torch.allclose(load_predictor(path).probabilities(images), shifted, atol=1e-6)


def test_a_config_with_a_bad_test_time_shift_is_refused_in_one_line(make_train_cfg) -> None:
    with pytest.raises(
        ConfigError,
        match=r"model.test_time_shift=9 is invalid: it must be a whole number in \[0, 3\]",
    ):
        train(make_train_cfg("model.test_time_shift=9"))


def test_a_config_naming_an_unknown_net_is_refused_before_training(make_train_cfg) -> None:
    with pytest.raises(ConfigError, match="model.net: net 'resnet' is not a net of this project"):
        train(make_train_cfg("model.net.name=resnet"))


def test_files_written_before_the_card_still_load_and_predict_the_same() -> None:
    expected = torch.tensor(
        json.loads((LEGACY / "expected_probabilities.json").read_text())["probabilities"]
    )
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for name in ("seed_cnn.ckpt", "character_recognition.torch"):
        predictor = load_predictor(LEGACY / name)
        assert predictor.class_names[10] == "A"
        assert torch.allclose(predictor.probabilities(images), expected, atol=1e-6), name
    loaded = load_checkpoint_model(LEGACY / "seed_cnn.ckpt")
    assert loaded.card.net == "seed_cnn" and loaded.card.net_params["fc1_neurons"] == 8
    assert (loaded.card.input_mean, loaded.card.input_std) == (0.2, 0.3)


def test_an_old_checkpoint_resumes_into_todays_module(make_train_cfg, tmp_path: Path) -> None:
    copy = tmp_path / "old" / "checkpoints" / "seed_cnn.ckpt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes((LEGACY / "seed_cnn.ckpt").read_bytes())
    metrics = train(
        make_train_cfg(
            f"ckpt_path={copy}",
            "model.net.fc1_neurons=8",
            "model.input_mean=0.2",
            "model.input_std=0.3",
            "trainer.max_epochs=2",
            "test=false",
        )
    )
    assert metrics["epochs"] == 2


@pytest.mark.parametrize(
    ("net", "net_params"),
    [
        ("bn_cnn", {"widths": [4, 8], "fc1_neurons": 8, "dropout": 0.1}),
        ("res_cnn", {"widths": [8, 8, 8], "blocks": [1, 2, 1], "fc1_neurons": 8, "dropout": 0.1}),
    ],
)
def test_onnx_export_of_a_random_model_matches_pytorch_with_its_own_normalisation(
    tmp_path: Path, net: str, net_params: dict
) -> None:
    card = ModelCard.from_dict(
        _card(
            net=net,
            net_params=net_params,
            input_mean=0.6,
            input_std=0.05,
        ),
        "card",
    )
    _check_onnx_matches_pytorch(card, tmp_path)


def test_onnx_export_keeps_test_time_shifts_in_the_graph(tmp_path: Path) -> None:
    card = ModelCard.from_dict(_card(test_time_shift=2), "card")
    predictor = _check_onnx_matches_pytorch(card, tmp_path)
    assert (
        ModelCard.from_dict(
            json.loads(
                {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}[
                    "model_card"
                ]
            ),
            "onnx",
        ).test_time_shift
        == 2
    )
    assert predictor.class_names == list("0123456789")


def _check_onnx_matches_pytorch(card: ModelCard, tmp_path: Path):
    torch.manual_seed(0)
    model = card.build_model().eval()
    path = export_onnx(card, model, tmp_path / "model.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    images = torch.rand(7, 1, 28, 28)
    with torch.inference_mode():
        expected = model(images)
        unnormalised = model.net(images)
    predictor = load_predictor(path)
    (logits,) = predictor.session.run(None, {"images": images.numpy()})
    assert np.abs(logits - expected.numpy()).max() < 1e-4
    # mean/std are really inside the graph: without them the logits are far off
    assert (
        np.abs(logits - unnormalised.numpy()).max() > 100 * np.abs(logits - expected.numpy()).max()
    )
    assert predictor.class_names == list("0123456789")
    return predictor


# -- hostile files ---------------------------------------------------------------------------
PAYLOADS = {
    "write_text": lambda target: {
        "_target_": "pathlib.Path.write_text",
        "self": str(target),
        "data": "import os",
    },
    "open": lambda target: {"_target_": "builtins.open", "file": str(target), "mode": "w"},
    "torch_save": lambda target: {"_target_": "torch.save", "obj": 1, "f": str(target)},
}


def _hostile_checkpoints(run_dir: Path, folder: Path, target: Path) -> dict[str, Path]:
    """Checkpoints that pass torch.load(weights_only=True) but carry _target_ payloads."""
    real = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    made = {}
    for kind, payload in PAYLOADS.items():
        card_nested = dict(real, model_card=dict(real["model_card"]))
        card_nested["model_card"]["net_params"] = {"fc1_neurons": payload(target), "dropout": 0.1}
        made[f"card-{kind}"] = card_nested
        legacy = {k: v for k, v in real.items() if k != "model_card"}
        legacy["hyper_parameters"] = dict(real["hyper_parameters"], net=payload(target))
        made[f"legacy-{kind}"] = legacy
    deep = {k: v for k, v in real.items() if k != "model_card"}
    deep["hyper_parameters"] = dict(
        real["hyper_parameters"],
        net={
            "_target_": "emnist_lightning.nets.BatchNormCNN",
            "widths": [{"nested": [PAYLOADS["write_text"](target)]}, 4],
        },
    )
    made["legacy-deep"] = deep
    paths = {}
    for name, checkpoint in made.items():
        path = folder / f"{name}.ckpt"
        torch.save(checkpoint, path)
        paths[name] = path
    return paths


def _hostile_state_dicts(run_dir: Path, folder: Path, target: Path) -> dict[str, Path]:
    """character_recognition.torch files whose card (or pre-card mapping) carries payloads."""
    card = json.loads((run_dir / CARD_NAME).read_text())
    variants = {
        "card": dict(card, net_params={"fc1_neurons": PAYLOADS["open"](target), "dropout": 0.1}),
        "card-list": dict(card, class_names=[PAYLOADS["torch_save"](target)] * 47),
        "mapping": {
            "class_names": card["class_names"],
            "net": {"_target_": "pathlib.Path.write_text", "self": str(target), "data": "x"},
            "input_mean": 0.1,
            "input_std": 0.3,
        },
        "truncated": None,
    }
    paths = {}
    for name, content in variants.items():
        sub = folder / name
        sub.mkdir()
        (sub / STATE_DICT_NAME).write_bytes((run_dir / STATE_DICT_NAME).read_bytes())
        file = sub / ("class_mapping.json" if name == "mapping" else CARD_NAME)
        text = json.dumps(card)[:100] if content is None else json.dumps(content)
        file.write_text(text)
        paths[name] = sub / STATE_DICT_NAME
    return paths


def _hostile_onnx(run_dir: Path, folder: Path, target: Path) -> Path:
    loaded = load_checkpoint_model(run_dir / "checkpoints" / "last.ckpt")
    path = export_onnx(loaded.card, loaded.model, folder / "model.onnx")
    model = onnx.load(str(path))
    card = loaded.card.to_dict()
    card["net_params"] = {"fc1_neurons": PAYLOADS["write_text"](target), "dropout": 0.1}
    onnx.helper.set_model_props(model, {"model_card": json.dumps(card)})
    onnx.save(model, str(path))
    return path


class _Pickled:
    """An object whose unpickling would write a file (what weights_only=True refuses)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


@pytest.fixture(scope="module")
def hostile(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("hostile")
    target = folder / "pwned.pth"
    files = {
        **_hostile_checkpoints(run_dir, folder, target),
        **{f"state_dict-{k}": v for k, v in _hostile_state_dicts(run_dir, folder, target).items()},
        "onnx": _hostile_onnx(run_dir, folder, target),
    }
    pickled = folder / "pickled.ckpt"
    torch.save({"state_dict": {}, "model_card": _Pickled(target)}, pickled)
    files["pickle"] = pickled
    return {"files": files, "target": target}


def test_every_hostile_model_file_is_refused_by_every_loader_in_one_line(
    hostile: dict, data_dir: Path, tmp_path: Path
) -> None:
    for name, path in hostile["files"].items():
        for task, config, extra in (
            (predict, "predict", ["random_test=2"]),
            (evaluate, "evaluate", []),
            (export, "export", []),
        ):
            cfg = compose_config(
                config,
                [f"ckpt_path={path}", f"data.data_dir={data_dir}", "data.download=false", *extra]
                if config != "export"
                else [f"ckpt_path={path}"],
                tmp_path / f"{name}-{config}",
            )
            with pytest.raises(UserError) as error:
                task(cfg)
            assert "\n" not in str(error.value), (name, config)
            assert not hostile["target"].exists(), (name, config)


def test_hostile_checkpoints_cannot_be_resumed(hostile: dict, make_train_cfg) -> None:
    for name, path in hostile["files"].items():
        if path.suffix != ".ckpt":
            continue
        with pytest.raises(UserError):
            train(make_train_cfg(f"ckpt_path={path}", "model.net.fc1_neurons=16"))
        assert not hostile["target"].exists(), name


@pytest.mark.parametrize("script", ["predict.py", "evaluate.py", "export.py", "train.py"])
@pytest.mark.slow
def test_entry_points_refuse_a_hostile_file_with_one_line_and_exit_2(
    script: str, hostile: dict, data_dir: Path, tmp_path: Path
) -> None:
    path = hostile["files"]["card-write_text" if script == "train.py" else "legacy-deep"]
    overrides = [f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}"]
    if script != "export.py":
        overrides += [f"data.data_dir={data_dir}", "data.download=false"]
    if script == "predict.py":
        overrides.append("random_test=2")
    result = subprocess.run(
        [sys.executable, script, *overrides], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines
    assert not hostile["target"].exists()
    assert not (tmp_path / "out").exists()  # a refused run leaves no folder behind


def _poisoned(weights: dict) -> dict:
    name = next(k for k, v in weights.items() if k.endswith("conv1.weight"))
    return {**weights, name: torch.full_like(weights[name], float("nan"))}


@pytest.mark.slow
def test_nan_weights_are_refused_in_one_line_in_every_model_format(
    run_dir: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["state_dict"] = _poisoned(checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "nan.ckpt")
    (tmp_path / "sd").mkdir()
    weights = torch.load(run_dir / STATE_DICT_NAME, weights_only=True)
    torch.save(_poisoned(weights), tmp_path / "sd" / STATE_DICT_NAME)
    (tmp_path / "sd" / CARD_NAME).write_text((run_dir / CARD_NAME).read_text())
    for path in (tmp_path / "nan.ckpt", tmp_path / "sd" / STATE_DICT_NAME):
        with pytest.raises(ModelFileError, match=r"holds NaN or infinite values"):
            load_predictor(path)

    loaded = load_checkpoint_model(run_dir / "checkpoints" / "last.ckpt")
    onnx_path = export_onnx(loaded.card, loaded.model, tmp_path / "model.onnx")
    graph = onnx.load(onnx_path)
    tensor = next(t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    array = np.full(onnx.numpy_helper.to_array(tensor).shape, np.nan, dtype=np.float32)
    tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    onnx.save(graph, onnx_path)
    with pytest.raises(ModelFileError, match=r"hold NaN or infinite values"):
        load_predictor(onnx_path)

    # serve.py refuses it before it starts anything; predict.py alike.
    image = tmp_path / "blank.png"
    Image.new("L", (28, 28), 255).save(image)
    for script, extra in (("serve.py", []), ("predict.py", [f"images={image}"])):
        result = subprocess.run(
            [sys.executable, script, f"ckpt_path={tmp_path / 'nan.ckpt'}", *extra],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=300,
        )
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
        assert "holds NaN or infinite values" in errors[0]
