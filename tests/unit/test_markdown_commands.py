"""Reading a page's shell blocks as a reader would copy them (the README command test's input)."""

from __future__ import annotations

from pathlib import Path

from helpers.markdown_commands import shell_blocks

PAGE = """# A page

```bash
# a comment line first
make train ARGS="model.lr=0.01"   # trailing comment
python train.py experiment=best
```

```yaml
key: value
```

```bash
torchrun --nnodes=2 \\
  train.py trainer=ddp   # continued
```

```bash
echo "a # inside quotes"
```
"""


def test_each_shell_block_gives_its_first_command_without_comments(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    blocks = shell_blocks(page)
    assert [(b.line, b.first_command) for b in blocks] == [
        (3, 'make train ARGS="model.lr=0.01"'),
        (13, "torchrun --nnodes=2 train.py trainer=ddp"),
        (18, 'echo "a # inside quotes"'),
    ]
