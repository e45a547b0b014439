"""Muon for a net's hidden weight matrices and AdamW for the rest, as one optimizer.

`torch.optim.Muon` takes 2-D parameters only, and it is meant for hidden layers: embeddings,
the output layer, biases and norms belong to AdamW. Lightning's automatic optimization and
the schedulers take one optimizer, so this wraps both behind one `torch.optim.Optimizer`
whose `param_groups` are theirs (a scheduler's learning rate reaches both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .errors import ConfigError


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on every 2-D parameter but the last (the output layer); AdamW on the others
    (convolution kernels are 4-D, so in this project's CNNs Muon trains the hidden fully
    connected layer).

    Muon's updates are scaled to AdamW's size (`adjust_lr_fn="match_rms_adamw"`), so one
    learning rate and weight decay serve both. Muon's momentum follows AdamW's beta1: a
    scheduler that cycles beta1 (OneCycleLR) cycles it too.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        fused: bool | None = None,
        adjust_lr_fn: str = "match_rms_adamw",
    ) -> None:
        params = list(params)
        if not params or not all(isinstance(p, torch.Tensor) for p in params):
            raise ConfigError("MuonWithAdamW takes a flat list of parameters (no groups)")
        matrices = [p for p in params if p.ndim == 2][:-1]
        if not matrices:
            raise ConfigError(
                "MuonWithAdamW: the net has no hidden weight matrix for Muon: use torch.optim.AdamW"
            )
        in_muon = {id(p) for p in matrices}
        others = [p for p in params if id(p) not in in_muon]
        self.adamw = torch.optim.AdamW(
            others, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused
        )
        self.muon = torch.optim.Muon(
            matrices,
            lr=lr,
            weight_decay=weight_decay,
            momentum=betas[0],
            adjust_lr_fn=adjust_lr_fn,
        )
        for group in self.muon.param_groups:
            group["betas"] = tuple(betas)
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "betas": betas})
        self.param_groups = self.adamw.param_groups + self.muon.param_groups

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
        self.adamw.load_state_dict(state_dict["adamw"])
        self.muon.load_state_dict(state_dict["muon"])
        self.param_groups = self.adamw.param_groups + self.muon.param_groups
