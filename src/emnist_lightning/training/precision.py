"""`trainer.precision=auto`: bf16 autocast only where the hardware computes bf16 natively;
and whether a run's accelerator setting means GPUs, which that choice and others hang on."""

from __future__ import annotations

from functools import cache

import torch


@cache  # the hardware does not change; Muon's step asks on every step
def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where oneDNN runs bf16 convolutions fast.

    Without them bf16 is emulated and autocast makes a small CNN several times slower.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def runs_on_gpu(accelerator: str) -> bool:
    """Whether `trainer.accelerator` puts the run on GPUs (`auto`: when CUDA is available)."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str | int | None, accelerator: str) -> str | int | None:
    """Turn `auto` into a Lightning precision for the accelerator the run will use."""
    if precision != "auto":
        return precision
    if runs_on_gpu(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("cpu", "auto"):
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return "32-true"
