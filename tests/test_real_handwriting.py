"""A few hundred steps on real EMNIST handwriting (the proxy data) must learn far above chance."""

from pathlib import Path

import pytest

from emnist_lightning.training import train


@pytest.mark.proxy
def test_a_few_hundred_steps_on_real_handwriting_learn_far_above_chance(
    make_train_cfg, proxy_data_dir: Path, tmp_path: Path
) -> None:
    cfg = make_train_cfg(
        "data.batch_size=128",
        "model.lr=0.002",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=100",
        "trainer.limit_val_batches=5",
        "test=false",
        data_dir=proxy_data_dir,
        output_dir=tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["global_step"] == 300
    chance = 1 / 47
    assert metrics["val/acc_best"] > 0.5 > 20 * chance, metrics
