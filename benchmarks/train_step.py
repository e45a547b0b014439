"""Training-step throughput of our nets under each compute choice, side by side in one run.

    python benchmarks/train_step.py

For the seed CNN (batch 256) and the batch-norm CNN of experiment=best (batch 128): images per
second of forward + backward + optimizer step on random data, for the default layout,
channels_last, channels_last with bf16 autocast (only meaningful on CPUs with native bf16),
and channels_last with torch.compile (compile time reported separately).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.models.nets import BatchNormCNN, SeedCNN
from emnist_lightning.training.precision import cpu_has_native_bf16

STEPS = 40


def images_per_second(
    net: nn.Module, batch: int, channels_last: bool, bf16: bool, compiled: bool
) -> tuple[float, float]:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
    images = torch.rand(batch, 1, 28, 28).contiguous(memory_format=layout)
    labels = torch.randint(0, 47, (batch,))
    forward = torch.compile(net) if compiled else net

    def step() -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(3):
        step()
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    return batch * STEPS / (time.perf_counter() - start), warm_up


def main() -> None:
    print(f"threads: {torch.get_num_threads()}, native bf16: {cpu_has_native_bf16()}")
    print(
        "| net (batch) | default layout | channels_last | channels_last + bf16 | channels_last + torch.compile (compile s) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, make, batch in (
        ("seed CNN", SeedCNN, 256),
        ("BN-CNN 16/32", lambda: BatchNormCNN(widths=(16, 32)), 128),
    ):
        plain, _ = images_per_second(make(), batch, False, False, False)
        last, _ = images_per_second(make(), batch, True, False, False)
        bf16, _ = images_per_second(make(), batch, True, True, False)
        compiled, compile_s = images_per_second(make(), batch, True, False, True)
        print(
            f"| {name} ({batch}) | {plain:,.0f} | {last:,.0f} | {bf16:,.0f} | {compiled:,.0f} ({compile_s:.0f} s) |"
        )


if __name__ == "__main__":
    main()
