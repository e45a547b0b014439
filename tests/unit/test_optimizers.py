"""MuonWithAdamW: which parameters each half trains, its joint state, copies and one-line
refusals (resuming it bit for bit: tests/test_reliability.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.nets import BatchNormCNN, BatchNormCNNEnsemble, SeedCNN
from emnist_lightning.models.optimizers import MuonWithAdamW


@pytest.mark.parametrize(
    ("net", "hidden"),
    [
        (SeedCNN(), ["fc1.weight"]),
        (BatchNormCNN(widths=(4, 8), fc1_neurons=8), ["classifier.2.weight"]),
        # Each member's output layer stays with AdamW, not only the last one.
        (
            BatchNormCNNEnsemble(members=2, widths=(4, 8), fc1_neurons=8),
            ["members.0.classifier.2.weight", "members.1.classifier.2.weight"],
        ),
    ],
)
def test_muon_trains_the_hidden_matrix_and_adamw_everything_else(
    net: nn.Module, hidden: list[str]
) -> None:
    names = {id(p): name for name, p in net.named_parameters()}
    optimizer = MuonWithAdamW(net.parameters(), lr=0.01)
    assert [names[id(p)] for p in optimizer.muon.param_groups[0]["params"]] == hidden
    in_adamw = {names[id(p)] for p in optimizer.adamw.param_groups[0]["params"]}
    assert in_adamw == set(names.values()) - set(hidden)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    net(torch.rand(8, 1, 28, 28)).logsumexp(1).mean().backward()
    optimizer.step()
    for name, p in net.named_parameters():
        assert not torch.equal(p, before[name]), name


def test_a_scheduler_drives_both_halves_and_state_round_trips() -> None:
    net = SeedCNN()
    optimizer = MuonWithAdamW(net.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=10)
    for _ in range(3):
        net(torch.rand(8, 1, 28, 28)).logsumexp(1).mean().backward()
        optimizer.step()
        schedule.step()
    optimizer.step()  # Muon takes beta1's current value at each step
    adamw_group, muon_group = optimizer.adamw.param_groups[0], optimizer.muon.param_groups[0]
    assert adamw_group["lr"] == muon_group["lr"] == schedule.get_last_lr()[0] < 0.01
    assert muon_group["momentum"] == adamw_group["betas"][0] < 0.95  # cycled with beta1
    copy = MuonWithAdamW(SeedCNN().parameters(), lr=0.01)
    copy.load_state_dict(optimizer.state_dict())
    assert copy.muon.param_groups[0]["lr"] == muon_group["lr"]
    moment = optimizer.muon.state[optimizer.muon.param_groups[0]["params"][0]]["momentum_buffer"]
    copied = copy.muon.state[copy.muon.param_groups[0]["params"][0]]["momentum_buffer"]
    assert torch.equal(moment, copied)


def test_a_net_without_a_hidden_matrix_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="no hidden weight matrix for Muon: use torch.optim"):
        MuonWithAdamW(nn.Linear(4, 2).parameters())


def test_the_joint_state_writes_through_and_copies_keep_working() -> None:
    net = SeedCNN()
    optimizer = MuonWithAdamW(net.parameters(), lr=0.01, eps=1e-6)  # extra options go to AdamW
    assert optimizer.adamw.param_groups[0]["eps"] == 1e-6
    net(torch.rand(8, 1, 28, 28)).logsumexp(1).mean().backward()
    optimizer.step()
    assert len(optimizer.state) == len(optimizer.adamw.state) + len(optimizer.muon.state) == 8
    fc1 = net.fc1.weight
    optimizer.state[fc1] = {"momentum_buffer": torch.zeros_like(fc1)}  # as device moves do
    assert optimizer.muon.state[fc1]["momentum_buffer"].abs().sum() == 0
    copied = copy.deepcopy(optimizer)
    assert len(copied.state) == 8
    copied.step()


def test_parameter_groups_added_later_are_refused() -> None:
    optimizer = MuonWithAdamW(SeedCNN().parameters(), lr=0.01)
    with pytest.raises(ConfigError, match="cannot take parameter groups after it is built"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})


def test_the_float32_newton_schulz_step_matches_torchs_muon(monkeypatch) -> None:
    """Where bfloat16 is emulated the iteration runs in float32: the same step as torch's
    bfloat16 one up to bfloat16's rounding, with state that either optimizer resumes."""
    import emnist_lightning.models.optimizers as optimizers

    monkeypatch.setattr(optimizers, "cpu_has_native_bf16", lambda: False)
    torch.manual_seed(0)
    ours_weight = nn.Parameter(torch.randn(64, 300) * 0.05)
    torchs_weight = nn.Parameter(ours_weight.detach().clone())
    settings = {"lr": 0.02, "weight_decay": 0.01, "adjust_lr_fn": "match_rms_adamw"}
    ours = optimizers.CpuFriendlyMuon([ours_weight], **settings)
    theirs = torch.optim.Muon([torchs_weight], **settings)
    start = ours_weight.detach().clone()
    for _ in range(3):
        grad = torch.randn(64, 300)
        ours_weight.grad, torchs_weight.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    moved, difference = start - ours_weight, ours_weight - torchs_weight
    assert moved.norm() > 0.1
    assert difference.norm() < 0.05 * moved.norm()
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(
        theirs.state[torchs_weight]["momentum_buffer"], ours.state[ours_weight]["momentum_buffer"]
    )
