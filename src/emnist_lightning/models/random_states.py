"""The random number generators' states as plain data, so a resumed run draws what a
straight run would have drawn (dropout masks, augmentation) and ends bit-for-bit equal."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def collect() -> dict[str, Any]:
    """This process's torch, CUDA, NumPy and Python generator states, as tensors and ints
    (no NumPy arrays, so checkpoints still load with `weights_only=True`)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore(states: dict[str, Any]) -> None:
    """Set this process's generators to states made by `collect`."""
    torch.set_rng_state(states["torch"])
    saved = states["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def collect_all_ranks() -> list[dict[str, Any]]:
    """Every rank's states, in rank order (a collective call under torch.distributed)."""
    mine = collect()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


def restore_rank(all_states: list[dict[str, Any]], rank: int) -> bool:
    """Restore this rank's saved states; False when the checkpoint has none for it."""
    if not isinstance(all_states, list) or rank >= len(all_states):
        return False
    restore(all_states[rank])
    return True
