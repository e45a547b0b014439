"""Hydra sweep syntax -> Optuna distributions, with the official Optuna sweeper's semantics.

The same string means the same set here as in `hydra-optuna-sweeper`: `range(1,3)` is
{1, 2, 3} (both ends, as Optuna's distributions), `shuffle(range(1,3))` is the choice {1, 2}
(Python's range), `interval(1,5)` with whole-number ends draws integers. A value that is not a
sweep fixes its key; `~key` deletions are passed on to every job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ._errors import SweepConfigError, message_line


def _choices(override: Override) -> CategoricalDistribution:
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    for choice in choices:
        if not isinstance(choice, (str, int, float, bool, type(None))):
            raise SweepConfigError(
                f"{override.get_key_element()}: a choice must be a string, number, bool or "
                f"null, not {choice!r}"
            )
    return CategoricalDistribution(choices)


def create_optuna_distribution_from_override(override: Override) -> BaseDistribution | str:
    """The distribution of a sweep override; a plain override's value as a string (fixed)."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return _choices(override)
    if isinstance(value, RangeSweep):
        if value.shuffle:
            return _choices(override)
        if "log" in value.tags:
            raise SweepConfigError(
                f"{key}: range() takes no log tag (the official plugin ignores it); use "
                "tag(log, interval(a, b)) or tag(log, int(interval(a, b)))"
            )
        numbers = (value.start, value.stop, value.step)
        if any(isinstance(n, float) for n in numbers):
            step = float(value.step) if value.step else None
            return FloatDistribution(float(value.start), float(value.stop), step=step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise SweepConfigError(
        f"{key}: unsupported sweep {override.input_line}; use interval, range or choice"
    )


def distribution_of(override: Override) -> BaseDistribution | str:
    """As create_optuna_distribution_from_override; Optuna's complaints (low > high, log with
    a bound <= 0, ...) become one-line SweepConfigErrors."""
    try:
        return create_optuna_distribution_from_override(override)
    except ValueError as exc:
        raise SweepConfigError(
            f"{override.get_key_element()}: {override.input_line.split('=', 1)[-1]} is not a "
            f"valid search range: {message_line(exc)}"
        ) from None


def create_params_from_overrides(
    arguments: list[str],
) -> tuple[dict[str, BaseDistribution], dict[str, Any], list[str]]:
    """The official plugin's split of overrides: (search space, fixed params, deletions)."""
    space = parse_search_space(None, arguments)
    fixed_params = {}
    for line in space.fixed:
        if not line.startswith("~"):
            key, value = line.split("=", 1)
            fixed_params[key] = value
    return space.distributions, fixed_params, [o for o in space.fixed if o.startswith("~")]


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


@dataclass
class SearchSpace:
    """What each trial draws (`distributions`) and the overrides every trial's job gets as
    they are (`fixed`: plain values, `~key` deletions), in the order they were given."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)


def _parse(parser: OverridesParser, lines: list[str], where: str) -> list[Override]:
    try:
        return parser.parse_overrides(lines)
    except HydraException as exc:
        raise SweepConfigError(f"{where}: {message_line(exc)}") from None


def parse_search_space(params: Mapping[str, Any] | None, arguments: Iterable[str]) -> SearchSpace:
    """Split `hydra.sweeper.params` and the command line into a search space and fixed
    overrides. Both take one syntax; a key given later (the command line) replaces an earlier
    entry for it, whether a sweep or a fixed value."""
    parser = OverridesParser.create()
    flat = [f"{key}={value}" for key, value in flatten_params(params).items()]
    overrides = [
        *_parse(parser, flat, "hydra.sweeper.params"),
        *_parse(parser, list(arguments), "the command line"),
    ]
    entries: dict[str, BaseDistribution | str] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_delete():
            entries[override.input_line] = override.input_line
            continue
        entries.pop(key, None)  # a later entry for a key goes last, as Hydra applies them
        distribution = distribution_of(override)
        entries[key] = (
            distribution if isinstance(distribution, BaseDistribution) else override.input_line
        )
    space = SearchSpace()
    for key, entry in entries.items():
        if isinstance(entry, BaseDistribution):
            space.distributions[key] = entry
        else:
            space.fixed.append(entry)
    return space
