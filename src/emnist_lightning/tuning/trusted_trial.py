"""A study's trials are data from elsewhere: any worker that can write to a shared journal file
or database can plant a "best" trial. What a retrain config is built from is checked here,
against what this sweep itself searches and sets, so a planted trial cannot add `_target_`
nodes or keys nobody swept or set (which the retrain would instantiate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from emnist_lightning.config_checks import check_value
from emnist_lightning.errors import ConfigError
from hydra_plugins.optuna_pruning_sweeper.trial import OVERRIDES_ATTR


@dataclass
class TrustedTrial:
    """The parts of one trial a retrain may use, and what was left out (for one log line)."""

    params: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def dropped_line(self, number: int) -> str:
        shown = ", ".join(d[:80] for d in self.dropped[:5])
        more = f" and {len(self.dropped) - 5} more" if len(self.dropped) > 5 else ""
        return (
            f"Trial {number}: left out of the retrain config, as not what this sweep searches "
            f"or sets (a study's storage is shared data): {shown}{more}"
        )


def _param_fits(value: Any, distribution: BaseDistribution) -> bool:
    """Whether a stored parameter value lies in this sweep's own distribution for it."""
    if isinstance(distribution, CategoricalDistribution):
        return any(value == c and type(value) is type(c) for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, IntDistribution) and not isinstance(value, int):
        return False
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _parse(override: Any) -> Override | None:
    """A plain `key=value` override, or None for anything else (adds, deletes, sweeps: only
    trusted when this sweep's command line has the very same one)."""
    if not isinstance(override, str) or len(override) > 1000:
        return None
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception:  # Hydra's parser says why in several lines; the caller names it
        return None
    if parsed.type != OverrideType.CHANGE or parsed.is_sweep_override():
        return None
    return parsed


def _same_kind(theirs: Any, ours: Any) -> bool:
    """Numbers may differ between workers (same type, range checked after); anything else
    (group choices, paths, targets) only when equal."""
    numbers = (int, float)
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return type(ours) is type(theirs)
    return isinstance(ours, numbers) and isinstance(theirs, numbers)


def _trusted_override(override: Any, fixed: Sequence[str], ours: Mapping[str, Override]) -> bool:
    if isinstance(override, str) and override in fixed:
        return True  # exactly what this sweep's own command line says
    parsed = _parse(override)
    if parsed is None:
        return False
    key = parsed.get_key_element()
    mine = ours.get(key)
    if mine is None or any(part.startswith("_") for part in key.replace("/", ".").split(".")):
        return False
    if parsed.value() == mine.value():
        return True
    if not _same_kind(parsed.value(), mine.value()):
        return False
    try:
        check_value(key, parsed.value())
    except ConfigError:
        return False
    return True


def trusted_trial(
    trial: FrozenTrial, space: Mapping[str, BaseDistribution], fixed: Sequence[str]
) -> TrustedTrial:
    """The trial's parameters that this sweep searches, each inside this sweep's distribution,
    and its recorded overrides whose key this sweep's command line sets (`fixed`), each with
    a value of the same kind (numbers in range; anything else only if equal)."""
    trusted = TrustedTrial()
    for name, value in trial.params.items():
        if name in space and _param_fits(value, space[name]):
            trusted.params[name] = value
        else:
            trusted.dropped.append(f"{name}={value!r}")
    ours = {p.get_key_element(): p for p in map(_parse, fixed) if p is not None}
    recorded = trial.user_attrs.get(OVERRIDES_ATTR, [])
    for override in recorded if isinstance(recorded, list) else [recorded]:
        if _trusted_override(override, fixed, ours):
            trusted.overrides.append(override)
        else:
            trusted.dropped.append(str(override))
    return trusted
