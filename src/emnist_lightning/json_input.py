"""JSON from outside (model cards, ONNX metadata, request bodies) parsed with a size and a
nesting cap checked first: Python's parser recurses once per level, so `[` x 100,000 ends in
a RecursionError, and a 5,000-digit number in a ValueError, not a JSONDecodeError."""

from __future__ import annotations

import json
import re
from typing import Any

from emnist_lightning.errors import first_line

# Deeper than any file or request of this project (a model card nests 3 levels).
MAX_DEPTH = 32
# A string runs to its closing quote, or to the end of an unclosed one: the optional quote
# keeps the scan linear (a required one made `"\"\"\"...` rescan to the end at every quote).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?')
_BRACKET = re.compile(rb"[\[\]{}]")


class JSONInputError(ValueError):
    """JSON that is too large, too deep or not JSON: the message says which, in a few words."""


def nesting_depth(data: bytes) -> int:
    """How deeply arrays and objects nest, brackets inside strings left out (no parsing)."""
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', data)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(data: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Plain data from JSON text, or JSONInputError saying why not."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JSONInputError(f"larger than {max_bytes:,} bytes")
    if nesting_depth(raw) > max_depth:
        raise JSONInputError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise JSONInputError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of over 4,300 digits
        raise JSONInputError(f"not usable JSON ({first_line(exc)[:80]})") from None
