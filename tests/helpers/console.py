"""Reading a real command's console as its user would: what repeats, what is library noise."""

from __future__ import annotations

import re
from collections import Counter

# Hydra's console prefix, "[2026-11-28 15:16:31,700][logger.name][INFO] - ".
_HYDRA_PREFIX = re.compile(r"^\[[^\]]*\]\[[^\]]*\](\[[A-Z]+\])? ?-? ?")
# Lines of a printed table that may repeat: rules, blanks.
_RULE = re.compile(r"^[\s\-─=|+]*$")
# What must never appear: text of library noise the project silences.
NOISE = {
    "Lightning's own copy of a log line": re.compile(r"^INFO: ", re.MULTILINE),
    "the litlogger/litmodels tip": re.compile(r"litlogger|litmodels|💡"),
    "torch's _pytree deprecation": re.compile(r"LeafSpec"),
    "the warning about our own .lock file": re.compile(r"exists and is not empty"),
    "the ONNX exporter's internals": re.compile(r"\]\[(onnxscript|onnx_ir)[.\]]"),
    "a progress bar": re.compile(r"\d+it/s\]|it/s\]|\|█|█\|"),
}


def message_lines(console: str) -> list[str]:
    """Each console line without Hydra's time/logger prefix, stripped."""
    return [_HYDRA_PREFIX.sub("", line).strip() for line in console.splitlines()]


def repeated_lines(console: str) -> list[str]:
    """Lines whose message appears more than once (table rules and blanks aside)."""
    counts = Counter(line for line in message_lines(console) if not _RULE.match(line))
    return [line for line, count in counts.items() if count > 1]


def console_problems(console: str) -> list[str]:
    """Everything a user should not see: repeated lines and library noise, one entry each."""
    problems = [f"printed twice: {line}" for line in repeated_lines(console)]
    problems += [f"{what}: {m.group(0)!r}" for what, p in NOISE.items() if (m := p.search(console))]
    return problems
