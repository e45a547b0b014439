"""Shell commands as a Markdown page shows them, so a test can run what a reader would copy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHELL_FENCES = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")


@dataclass(frozen=True)
class ShellBlock:
    """A fenced shell block: where it starts and its first command (continuations joined)."""

    path: Path
    line: int
    first_command: str

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}: {self.first_command}"


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` outside quotes after whitespace)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def first_command(lines: list[str]) -> str:
    """The first command of a block's lines: comments and blank lines skipped, `\\` joined."""
    parts: list[str] = []
    for raw in lines:
        line = _strip_comment(raw).strip()
        if not line and not parts:
            continue
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        break
    return " ".join(p for p in parts if p)


def shell_blocks(path: Path) -> list[ShellBlock]:
    """Every fenced bash/sh block of a Markdown file that has a command, in order."""
    blocks: list[ShellBlock] = []
    fence = ""
    language = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _FENCE.match(line.strip())
        if not fence and match:
            fence, language, start, body = match.group(1), match.group(2).lower(), number, []
        elif fence and line.strip() == fence:
            command = first_command(body) if language in SHELL_FENCES else ""
            if command:
                blocks.append(ShellBlock(path, start, command))
            fence = ""
        elif fence:
            body.append(line)
    return blocks
