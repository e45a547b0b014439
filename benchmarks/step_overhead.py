"""Where a training step's time goes: a bare PyTorch loop against Lightning fits, side by side.

    python benchmarks/step_overhead.py --data-dir ../shared/data/emnist-proxy

Trains the seed CNN of experiment=seed_recipe for `--steps` steps on the real data, in one
process, as (1) a bare loop (in-memory batches, channels_last, bf16 autocast where native, the
same optimizer) and (2) `train.py`'s Lightning fit with each variant below, and prints training
images per second for each. `--profile` adds Lightning's SimpleProfiler report (time per hook)
of the fit as configured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from emnist_lightning.data.datamodule import EMNISTDataModule
from emnist_lightning.models.card import ModelCard
from emnist_lightning.training.precision import cpu_has_native_bf16
from emnist_lightning.training.run import train

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "fit, as configured": [],
    "fit, fused Adam": ["+model.optimizer.fused=true"],
    "fit, no per-step loss logging": ["model.log_every_step=false"],
    "fit, fused Adam + no per-step logging": [
        "+model.optimizer.fused=true",
        "model.log_every_step=false",
    ],
}


def bare_loop(data_dir: str, steps: int, fused: bool) -> float:
    """Images/s of the same net and batches with nothing but forward, backward and step."""
    datamodule = EMNISTDataModule(data_dir, download=False, batch_size=256)
    datamodule.setup("fit")
    card = ModelCard(
        net="seed_cnn",
        net_params={"fc1_neurons": 196, "dropout": 0.34},
        class_names=tuple(datamodule.characters),
        input_mean=0.5,
        input_std=0.5,
    )
    model = card.build_model(channels_last=True).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=4.7e-4, fused=fused)
    bf16 = cpu_has_native_bf16()
    loader = datamodule.train_dataloader()
    batches = (batch for _ in range(steps) for batch in loader)  # as many epochs as it takes
    seen = 0
    start = time.perf_counter()
    for _ in range(steps):
        images, labels = next(batches)
        images = images.float().div_(255)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


class _Throughput(L.Callback):
    """Images/s of training steps only (from the second step, so set-up is excluded)."""

    def __init__(self) -> None:
        self.start, self.images = 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 1:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= 1:
            self.images += len(batch[1])
            self.seconds = time.perf_counter() - self.start


def lightning_fit(data_dir: str, steps: int, overrides: list[str], out: Path) -> float:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "train",
            overrides=[
                "experiment=seed_recipe",
                f"data.data_dir={data_dir}",
                "data.download=false",
                "trainer.max_epochs=1",
                f"trainer.limit_train_batches={steps + 1}",
                "trainer.limit_val_batches=1",
                "+trainer.num_sanity_val_steps=0",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "test=false",
                "logger=csv",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.log_dir = str(out.parent)
    meter = _Throughput()
    train(cfg, extra_callbacks=[meter])
    return meter.images / meter.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="../shared/data/emnist-proxy")
    parser.add_argument("--steps", type=int, default=340, help="steps per variant (one epoch: 355)")
    parser.add_argument("--out", default="/tmp/emnist-step-overhead")
    parser.add_argument("--profile", action="store_true", help="print Lightning's SimpleProfiler")
    args = parser.parse_args()
    out = Path(args.out)
    print(f"threads: {torch.get_num_threads()}, native bf16: {cpu_has_native_bf16()}")
    rows = [
        ("bare loop", bare_loop(args.data_dir, args.steps, fused=False)),
        ("bare loop, fused Adam", bare_loop(args.data_dir, args.steps, fused=True)),
    ]
    for index, (name, overrides) in enumerate(VARIANTS.items()):
        rows.append((name, lightning_fit(args.data_dir, args.steps, overrides, out / str(index))))
    if args.profile:
        lightning_fit(args.data_dir, args.steps, ["+trainer.profiler=simple"], out / "profiled")
    print("| seed CNN, batch 256 | train images/s | vs bare loop |")
    print("| --- | --- | --- |")
    for name, speed in rows:
        print(f"| {name} | {speed:,.0f} | {speed / rows[0][1]:.2f} |")


if __name__ == "__main__":
    main()
