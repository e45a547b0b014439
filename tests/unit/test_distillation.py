"""Distillation: the teacher's loss, what is refused in one line, and real runs taught by a
trained model file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.emnist_fixtures import write_emnist_fixture

from emnist_lightning.config_checks import validate_config
from emnist_lightning.data.datamodule import load_split
from emnist_lightning.errors import ConfigError, UserError
from emnist_lightning.inference.model_files import load_model, read_checkpoint
from emnist_lightning.models.distillation import Distillation
from emnist_lightning.training.run import train


def _teacher_file(logs: Path) -> Path:
    return logs / "train" / "runs" / "tiny" / "checkpoints" / "last.ckpt"


def test_the_loss_is_the_softened_kl_scaled_by_the_temperature_squared(
    tiny_trained_logs: Path,
) -> None:
    distiller = Distillation(str(_teacher_file(tiny_trained_logs)), temperature=3.0)
    student, teacher = torch.randn(8, 47), torch.randn(8, 47)
    p_teacher = F.softmax(teacher / 3, dim=1)
    by_hand = (p_teacher * (p_teacher.log() - F.log_softmax(student / 3, dim=1))).sum(1).mean()
    torch.testing.assert_close(distiller.loss(student, teacher), 9 * by_hand)
    # Zero for the teacher's own scores; log-probabilities (an ensemble's) count as logits.
    assert float(distiller.loss(teacher, teacher)) == pytest.approx(0, abs=1e-6)
    shifted = teacher.log_softmax(dim=1)
    torch.testing.assert_close(distiller.loss(student, shifted), distiller.loss(student, teacher))


@pytest.mark.parametrize("file", ["checkpoint", "state_dict"])
def test_the_teacher_scores_as_its_model_file_does_and_trains_nothing(
    file: str, tiny_trained_logs: Path
) -> None:
    path = _teacher_file(tiny_trained_logs)
    if file == "state_dict":  # the seed-style file, with model_card.json beside it
        path = path.parents[1] / "character_recognition.torch"
    distiller = Distillation(str(path), channels_last=True)
    images = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        expected = load_model(path).model(images)
    torch.testing.assert_close(distiller.teacher_logits(images), expected)
    assert not any(p.requires_grad for p in distiller.teacher.parameters())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.distillation.weight=1.5", r"^model\.distillation\.weight=1\.5 is invalid"),
        ("model.distillation.temperature=0", r"^model\.distillation\.temperature=0 is invalid"),
        ("model.distillation.teacher=null", r"^model\.distillation\.teacher=None is invalid"),
    ],
)
def test_bad_distillation_settings_are_refused_in_one_line(
    override: str, message: str, make_train_cfg
) -> None:
    cfg = make_train_cfg("model/distillation=teacher", "model.distillation.teacher=x", override)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_a_teacher_that_is_missing_or_reads_other_classes_is_refused_in_one_line(
    make_train_cfg, tmp_path: Path, tiny_trained_logs: Path
) -> None:
    missing = make_train_cfg("model/distillation=teacher", "model.distillation.teacher=nope.ckpt")
    with pytest.raises(ConfigError, match=r"teacher=nope\.ckpt is not a file: give a checkpoint"):
        train(missing)
    # A checkpoint of the 47-class split cannot teach a student of the 10 digits.
    digits = make_train_cfg(
        "model/distillation=teacher",
        f"model.distillation.teacher={_teacher_file(tiny_trained_logs)}",
        "data.split=digits",
        data_dir=write_emnist_fixture(tmp_path / "digits", split="digits", train_per_class=3),
    )
    with pytest.raises(UserError, match=r"predicts 47 classes .*the student 10 .*same data\.split"):
        train(digits)
    not_a_model = tmp_path / "teacher.ckpt"
    not_a_model.write_bytes(b"not a checkpoint")
    damaged = make_train_cfg(
        "model/distillation=teacher", f"model.distillation.teacher={not_a_model}"
    )
    with pytest.raises(UserError) as refused:
        train(damaged)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"model.distillation.teacher: {not_a_model}")


def _agreement(student: Path, teacher: Path, images: torch.Tensor) -> float:
    with torch.no_grad():
        ours = load_model(student).model(images).argmax(dim=1)
        theirs = load_model(teacher).model(images).argmax(dim=1)
    return float((ours == theirs).float().mean())


def test_a_student_taught_by_a_teacher_learns_its_judgement_and_leaves_it_out_of_its_files(
    make_train_cfg, tmp_path: Path, tiny_trained_logs: Path, tiny_emnist: Path
) -> None:
    teacher = _teacher_file(tiny_trained_logs)
    runs = {}
    for name, chosen in {
        "labels": [],
        "taught": [
            "model/distillation=teacher",
            f"model.distillation.teacher={teacher}",
            "model.distillation.weight=1.0",
        ],
    }.items():
        cfg = make_train_cfg(
            "trainer.max_epochs=4",
            "model.lr=0.003",
            "test=false",
            "logger=none",
            *chosen,
            output_dir=tmp_path / name,
        )
        train(cfg)
        runs[name] = tmp_path / name / "checkpoints" / "last.ckpt"
    taught = read_checkpoint(runs["taught"])
    assert taught["hyper_parameters"]["distillation"]["teacher"] == str(teacher)
    assert taught["state_dict"].keys() == read_checkpoint(runs["labels"])["state_dict"].keys()
    # Taught by the teacher alone (weight 1), the student agrees with it far more often
    # than the same net, seed and batches trained on the labels.
    images = load_split(tiny_emnist, "balanced", train=True)[0].float().div(255)
    agree = {name: _agreement(path, teacher, images) for name, path in runs.items()}
    assert agree["taught"] > agree["labels"] + 0.2, agree
