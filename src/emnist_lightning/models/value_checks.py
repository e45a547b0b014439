"""Checks of plain values read from model files and configs: each returns the cleaned value,
or a short phrase saying what the value must be (callers put it into their one-line error)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], tuple[Any, str | None]]


def whole(low: int, high: int) -> Check:
    """An int (not a bool) in [low, high]."""

    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value, None
        return None, f"must be a whole number in [{low}, {high}]"

    return check


def number(low: float, high: float, *, open_high: bool = False, open_low: bool = False) -> Check:
    """A finite int or float between low and high, either end open or closed."""

    def check(value: Any) -> tuple[Any, str | None]:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > low if open_low else value >= low)
        ok = ok and (value < high if open_high else value <= high)
        if ok:
            return float(value), None
        return (
            None,
            f"must be a finite number in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}",
        )

    return check


def whole_list(length: int, low: int, high: int) -> Check:
    """A list (or tuple) of `length` whole numbers in [low, high], cleaned to a list."""
    item = whole(low, high)

    def check(value: Any) -> tuple[Any, str | None]:
        items = isinstance(value, (list, tuple)) and len(value) == length
        if items and all(item(v)[1] is None for v in value):
            return [item(v)[0] for v in value], None
        return None, f"must be a list of {length} whole numbers in [{low}, {high}]"

    return check


def one_of(*allowed: Any) -> Check:
    """One of `allowed`, of the same type as the first (so 1 is not True)."""

    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, type(allowed[0])) and value in allowed:
            return value, None
        return None, f"must be one of {', '.join(map(str, allowed))}"

    return check
