"""Muon for a net's hidden weight matrices and AdamW for the rest, as one optimizer.

`torch.optim.Muon` takes 2-D parameters only, and it is meant for hidden layers: embeddings,
the output layer, biases and norms belong to AdamW. Lightning's automatic optimization and
the schedulers take one optimizer, so this wraps both behind one `torch.optim.Optimizer`
whose `param_groups` and `state` are theirs (a scheduler's learning rate reaches both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import torch
from torch.optim._muon import _adjust_lr

from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.training.precision import cpu_has_native_bf16

STATE_KEYS = {"adamw", "muon"}


class _JointState(MutableMapping):
    """Both optimizers' per-parameter state as one mapping that writes through (Lightning
    moves optimizer state between devices by assigning into `optimizer.state`)."""

    def __init__(self, *parts: dict) -> None:
        self.parts = parts

    def _holder(self, key: Any) -> dict:
        return next((part for part in self.parts if key in part), self.parts[0])

    def __getitem__(self, key: Any) -> Any:
        return self._holder(key)[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._holder(key)[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._holder(key)[key]

    def __iter__(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)


def _orthogonalised(
    update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """Muon's Newton-Schulz iteration (the nearest semi-orthogonal matrix), in float32."""
    a, b, c = coefficients
    wide = update.size(0) <= update.size(1)
    x = update.float() if wide else update.float().T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class CpuFriendlyMuon(torch.optim.Muon):
    """torch.optim.Muon, with its Newton-Schulz iteration in float32 where bfloat16 is slow.

    torch runs the iteration in bfloat16. CPUs without native bfloat16 (AVX2, most laptops)
    emulate it: on an AVX2 CPU one iteration's products for a 256 x 2,352 matrix took 144 ms
    in bfloat16 against 5 ms in float32, and the iteration 77% of experiment=best's training. Same state and settings as torch's, so checkpoints
    of either resume with the other; on GPUs and bfloat16 CPUs it is torch's step unchanged.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        params = [p for group in self.param_groups for p in group["params"]]
        if any(p.is_cuda for p in params) or cpu_has_native_bf16():
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            with_grad: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, with_grad, grads, buffers)
            lr, momentum = float(group["lr"]), group["momentum"]
            for param, grad, buffer in zip(with_grad, grads, buffers, strict=True):
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                update = _orthogonalised(
                    update, group["ns_coefficients"], group["ns_steps"], group["eps"]
                )
                param.mul_(1 - lr * group["weight_decay"])
                step = _adjust_lr(lr, group["adjust_lr_fn"], param.shape)
                param.add_(update.to(param.dtype), alpha=-step)
        return loss


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on every 2-D parameter but the output layers (the last, and any shaped like it:
    an ensemble's members each have one); AdamW on the others
    (convolution kernels are 4-D, so in this project's CNNs Muon trains the hidden fully
    connected layer).

    Muon's updates are scaled to AdamW's size (`adjust_lr_fn="match_rms_adamw"`), so one
    learning rate and weight decay serve both. Muon's momentum follows AdamW's beta1: a
    scheduler that cycles beta1 (OneCycleLR) cycles it too. Other keyword arguments go to
    AdamW (eps, amsgrad, ...).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        adjust_lr_fn: str = "match_rms_adamw",
        **adamw_options: Any,
    ) -> None:
        params = list(params)
        if not params or not all(isinstance(p, torch.Tensor) for p in params):
            raise ConfigError("MuonWithAdamW takes a flat list of parameters (no groups)")
        # The output layer is the last 2-D parameter; an ensemble has one per member, each
        # shaped like the last.
        two_d = [p for p in params if p.ndim == 2]
        matrices = [p for p in two_d if p.shape != two_d[-1].shape]
        if not matrices:
            raise ConfigError(
                "MuonWithAdamW: the net has no hidden weight matrix for Muon: use torch.optim.AdamW"
            )
        in_muon = {id(p) for p in matrices}
        others = [p for p in params if id(p) not in in_muon]
        self.adamw = torch.optim.AdamW(
            others, lr=lr, betas=betas, weight_decay=weight_decay, **adamw_options
        )
        self.muon = CpuFriendlyMuon(
            matrices,
            lr=lr,
            weight_decay=weight_decay,
            momentum=betas[0],
            adjust_lr_fn=adjust_lr_fn,
        )
        for group in self.muon.param_groups:
            group["betas"] = tuple(betas)
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "betas": betas})
        self._join()
        self._built = True

    def _join(self) -> None:
        self.param_groups = self.adamw.param_groups + self.muon.param_groups
        self.__dict__["state"] = _JointState(self.adamw.state, self.muon.state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_built", False):  # neither half would step a group added now
            raise ConfigError(
                "MuonWithAdamW cannot take parameter groups after it is built "
                "(e.g. fine-tuning callbacks that unfreeze layers): use torch.optim.AdamW"
            )
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.muon.param_groups:
            group["momentum"] = group["betas"][0]
        self.adamw.step()
        self.muon.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != STATE_KEYS:
            raise CheckpointError(
                "the checkpoint's optimizer state is not MuonWithAdamW's: resume with the "
                "optimizer it was trained with (model.optimizer._target_)"
            )
        self.adamw.load_state_dict(state_dict["adamw"])
        self.muon.load_state_dict(state_dict["muon"])
        self._join()

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._join()
