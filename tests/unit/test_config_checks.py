"""Every key of every entry point's config has a type and range check: the keys are read from
the composed configs (every option of every group), the bad values from each key's rule."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from helpers.configs import CONF_DIR, compose_config
from omegaconf import DictConfig, OmegaConf, open_dict

from emnist_lightning.config_checks import leaves, rule_for, validate_config
from emnist_lightning.errors import ConfigError

ENTRY_POINTS = ("train", "tune", "predict", "evaluate", "export", "serve")
# train.py's config groups, each option composed on its own (experiments and debug overlays
# change several groups at once).
TRAIN_GROUPS = ("model", "callbacks", "logger", "trainer", "data/augment", "experiment", "debug")


def _variants() -> list[tuple[str, tuple[str, ...]]]:
    variants = [(name, ()) for name in ENTRY_POINTS]
    for group in TRAIN_GROUPS:
        for option in sorted((Path(CONF_DIR) / group).glob("*.yaml")):
            variants.append(("train", (f"{group}={option.stem}",)))
    return variants


@cache
def _composed(name: str, overrides: tuple[str, ...]) -> DictConfig:
    return compose_config(name, list(overrides), Path("/nonexistent/run"))


@cache
def _every_key() -> list[tuple[str, tuple[str, ...], str]]:
    """(config, overrides, key) for each key, in the first config it appears in (a key means
    the same in every entry point's config, with one rule)."""
    seen: dict[str, tuple[str, tuple[str, ...], str]] = {}
    for name, overrides in _variants():
        for key, _ in leaves(_composed(name, overrides)):
            seen.setdefault(key, (name, overrides, key))
    return list(seen.values())


def test_the_shipped_configs_pass_their_own_checks() -> None:
    for name, overrides in _variants():
        validate_config(_composed(name, overrides))


def test_every_key_of_every_config_has_a_check() -> None:
    unchecked = [
        f"{name} {' '.join(o)}: {key}" for name, o, key in _every_key() if not rule_for(key)
    ]
    assert not unchecked, "keys without a rule in config_checks.RULES:\n" + "\n".join(unchecked)
    assert len(_every_key()) > 120  # the walk reaches every group


def _following(key: str, node: object, path: str = "") -> set[str]:
    """Keys whose raw value is `${key}` (data.seed follows seed): they may be named instead."""
    if isinstance(node, dict):
        return set().union(*(_following(key, v, f"{path}{k}.") for k, v in node.items()))
    return {path.rstrip(".")} if node == f"${{{key}}}" else set()


@pytest.mark.parametrize(
    ("name", "overrides", "key"), _every_key(), ids=lambda v: v if isinstance(v, str) else None
)
def test_every_key_refuses_a_wrong_type_and_an_out_of_range_value_in_one_line(
    name: str, overrides: tuple[str, ...], key: str
) -> None:
    rule = rule_for(key)
    assert rule is not None and rule.bad, key
    for bad in rule.bad:
        cfg = _composed(name, overrides).copy()
        with open_dict(cfg):
            OmegaConf.update(cfg, key, bad, force_add=True)
        with pytest.raises(ConfigError) as refused:
            validate_config(cfg)
        message = str(refused.value)
        assert "\n" not in message and " is invalid: it must be " in message, message
        raw = OmegaConf.to_container(_composed(name, overrides), resolve=False)
        assert message.split("=", 1)[0] in {key} | _following(key, raw), message


def test_lightnings_own_defaults_pass_and_monitors_name_what_is_logged() -> None:
    from emnist_lightning.config_checks import check_value

    # ModelCheckpoint without a monitor (keep the newest) or a filename is Lightning's default.
    check_value("callbacks.model_checkpoint.monitor", None)
    check_value("callbacks.model_checkpoint.filename", None)
    check_value("callbacks.model_checkpoint.monitor", "epoch")
    # EarlyStopping and the pruner only see logged metrics: `epoch` would fail after the first
    # validation, or never prune.
    for key in ("callbacks.early_stopping.monitor", "pruning_monitor"):
        with pytest.raises(ConfigError, match=f"{key}='epoch' is invalid"):
            check_value(key, "epoch")
