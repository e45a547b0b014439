"""Hydra sweep syntax (interval, tag(log, ...), range, choice) -> Optuna distributions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from emnist_lightning.errors import ConfigError, first_line


def _distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override; bad bounds are a one-line ConfigError."""
    try:
        return _build_distribution(override)
    except ValueError as exc:  # Optuna's checks: low > high, log with a bound <= 0, ...
        raise ConfigError(
            f"{override.get_key_element()}: {override.input_line.split('=', 1)[-1]} is not a "
            f"valid search range: {first_line(exc)}"
        ) from None


def _build_distribution(override: Override) -> BaseDistribution:
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([v for v in value.list])
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep):
        if value.shuffle or "log" in value.tags:
            raise ConfigError(
                f"{key}: range() sweeps take no shuffle or log; use tag(log, interval(a, b))"
            )
        numbers = (value.start, value.stop, value.step)
        if all(isinstance(n, int) for n in numbers):
            last = value.start + ((value.stop - 1 - value.start) // value.step) * value.step
            return IntDistribution(value.start, last, step=value.step)
        steps = int((value.stop - value.start) / value.step - 1e-9)
        return FloatDistribution(value.start, value.start + steps * value.step, step=value.step)
    raise ConfigError(
        f"{key}: unsupported sweep {override.input_line}; use interval, range or choice"
    )


def flatten_params(params: Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """`{"model": {"lr": "interval(...)"}}` and `{"model.lr": "interval(...)"}` -> dotted keys."""
    flat: dict[str, str] = {}
    for key, value in (params or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{path}."))
        elif value is not None:  # null drops a key from the space
            flat[path] = str(value)
    return flat


def parse_search_space(
    params: Mapping[str, Any] | None, arguments: Iterable[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Split config `params` and command-line arguments into a search space and fixed overrides.

    Command-line sweeps (`key=interval(...)`) and config params share one syntax; a key given
    on the command line replaces the config's entry for it.
    """
    parser = OverridesParser.create()
    flat = flatten_params(params)
    from_config = parser.parse_overrides([f"{key}={value}" for key, value in flat.items()])
    from_command_line = parser.parse_overrides(list(arguments))
    space: dict[str, BaseDistribution] = {}
    for override in from_config:
        if not override.is_sweep_override():
            raise ConfigError(
                f"hydra.sweeper.params.{override.get_key_element()} must be a sweep, e.g. interval(0.0, 0.8)"
            )
        space[override.get_key_element()] = _distribution(override)
    fixed: list[str] = []
    for override in from_command_line:
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            space.pop(key, None)
            fixed.append(override.input_line)
    return space, fixed
