"""Checks the values users override most, before any data is read or a Trainer is built.

The net's arguments are checked by the net registry (models/nets.py) and the normalisation by
the model card's checks (models/card.py): the checks model files are read with, so a config
and a file can never disagree on what a valid model is."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emnist_lightning.data.labels import SPLITS
from emnist_lightning.errors import ConfigError, ModelFileError
from emnist_lightning.models.card import INPUT_MEAN, INPUT_STD
from emnist_lightning.models.nets import NETS, check_net, param_problem
from emnist_lightning.models.value_checks import Check

# (config key, test the value must pass, what a valid value looks like)
_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    (
        "model.lr",
        lambda v: _is_number(v) and math.isfinite(v) and v > 0,
        "a finite number greater than 0, e.g. 0.001",
    ),
    (
        "model.logit_adjust_tau",
        lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        "a finite number >= 0, e.g. 1.0",
    ),
    (
        "model.label_smoothing",
        lambda v: _is_number(v) and 0 <= v < 1,
        "a number in [0, 1), e.g. 0.1",
    ),
    ("data.batch_size", lambda v: _is_int(v) and v >= 1, "a whole number >= 1, e.g. 256"),
    ("data.eval_batch_size", lambda v: _is_int(v) and v >= 1, "a whole number >= 1, e.g. 1024"),
    (
        "data.val_fraction",
        lambda v: _is_number(v) and 0 < v < 1,
        "a number between 0 and 1, e.g. 0.1",
    ),
    ("data.split", lambda v: v in SPLITS, "one of " + ", ".join(SPLITS)),
    ("trainer.max_epochs", lambda v: _is_int(v) and (v >= 1 or v == -1), "a whole number >= 1"),
    # predict.py
    ("top_k", lambda v: _is_int(v) and v >= 1, "a whole number >= 1, e.g. 3"),
    ("random_test", lambda v: _is_int(v) and v >= 0, "a whole number >= 0, e.g. 16"),
]
# Model-card fields a training config sets, checked as every model file's card is.
_CARD_FIELDS: dict[str, Check] = {"model.input_mean": INPUT_MEAN, "model.input_std": INPUT_STD}
# Keys that moved: an experiment file of an earlier release may still set them.
_MOVED_KEYS = {"data.mean": "model.input_mean", "data.std": "model.input_std"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(cfg: DictConfig) -> None:
    """Raise one ConfigError naming the first bad key, its value and what would work."""
    for key, is_valid, expected in _RULES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not is_valid(value):
            raise ConfigError(f"{key}={value!r} is invalid: it must be {expected}")
    for old, new in _MOVED_KEYS.items():
        if OmegaConf.select(cfg, old, default=None) is not None:
            raise ConfigError(
                f"{old} is now {new} (normalisation is a fact of the model, recorded in its "
                f"card): set {new} instead"
            )
    for key, check in _CARD_FIELDS.items():
        value = OmegaConf.select(cfg, key, default=None)
        problem = check(value)[1] if value is not None else None
        if problem:
            raise ConfigError(f"{key}={value!r} is invalid: it {problem}")
    net = OmegaConf.select(cfg, "model.net", default=None)
    if net is not None:
        check_net_config(OmegaConf.to_container(net, resolve=True))


def check_net_config(net: Any) -> None:
    """`model.net` (a registry name and the net's arguments) by the registry's own checks,
    the ones every model file is read with."""
    if not isinstance(net, dict):
        raise ConfigError("model.net must be a mapping: name: <net> and the net's arguments")
    params = {key: value for key, value in net.items() if key != "name"}
    if net.get("name") in NETS:
        failed = param_problem(net["name"], params)
        if failed:
            key, problem = failed
            raise ConfigError(f"model.net.{key}={params[key]!r} is invalid: it {problem}")
    try:
        check_net(net.get("name"), params, "model.net")
    except ModelFileError as exc:
        raise ConfigError(str(exc)) from None
