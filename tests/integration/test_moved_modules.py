"""What users have keeps working after the package was regrouped: checkpoints and experiment
files that name old module paths (`emnist_lightning.optimizers.X`, `emnist_lightning.augment.X`,
`emnist_lightning.nets.X`) resume, load and train through moved_modules' aliases. (The
committed pre-card checkpoint, naming `emnist_lightning.nets.SeedCNN`, resumes in
test_model_card.py.)"""

from __future__ import annotations

from pathlib import Path

import torch

from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.training.run import train

OLD_MUON = "emnist_lightning.optimizers.MuonWithAdamW"
NEW_MUON = "emnist_lightning.models.optimizers.MuonWithAdamW"
QUICK = ("test=false", "logger=none", "trainer.limit_val_batches=1")


def test_a_checkpoint_naming_the_old_optimizer_path_resumes_and_loads(
    make_train_cfg, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(
        make_train_cfg(
            f"model.optimizer._target_={NEW_MUON}", "trainer.max_epochs=1", *QUICK, output_dir=run
        )
    )
    # Rewrite it as a checkpoint written before the regroup: the optimizer's old module path.
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"]["_target_"] = OLD_MUON
    steps_before = checkpoint["global_step"]

    for configured in (NEW_MUON, OLD_MUON):  # today's config, and a user's unchanged one
        # A fresh copy each time: a resume writes into the resumed run's own folder.
        old = tmp_path / configured / "checkpoints" / "last.ckpt"
        old.parent.mkdir(parents=True)
        torch.save(checkpoint, old)
        assert load_predictor(old).class_names[10] == "A"
        resumed = train(
            make_train_cfg(
                f"ckpt_path={old}",
                f"model.optimizer._target_={configured}",
                "trainer.max_epochs=2",
                *QUICK,
                output_dir=tmp_path / configured,
            )
        )
        assert resumed["epochs"] == 2, configured
        assert resumed["global_step"] > steps_before, configured  # it really trained on


def test_an_experiment_naming_the_old_augmentation_path_still_trains(make_train_cfg) -> None:
    cfg = make_train_cfg(
        "data/augment=stroke_width",
        "data.augment._target_=emnist_lightning.augment.RandomStrokeWidth",
        "data.augment.p=1.0",
        "trainer.max_epochs=1",
        *QUICK,
    )
    metrics = train(cfg)
    assert metrics["global_step"] > 0
