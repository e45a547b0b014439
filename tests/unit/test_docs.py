"""The manual builds with `mkdocs build --strict`, and the README's links reach real files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Markdown links and images with a relative target: [text](target) / ![alt](target).
RELATIVE_LINK = re.compile(r"!?\[[^\]]*\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    pytest.importorskip(
        "material", reason="mkdocs-material is not installed: pip install -e '.[docs]'"
    )
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_manual_builds_strictly_with_every_page_in_the_site(tmp_path: Path) -> None:
    result = build_site(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    pages = sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    for page in pages:
        built = "index.html" if page == "index" else f"{page}/index.html"
        assert (tmp_path / "site" / built).is_file(), page


def test_a_broken_link_in_the_manual_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "docs", copy / "docs")
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    page = copy / "docs" / "layout.md"
    page.write_text(page.read_text() + "\nSee [the data](data.md#no-such-section).\n")
    result = build_site(copy / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stdout + result.stderr


def test_every_relative_link_of_the_readme_and_the_manual_reaches_a_file() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for target in RELATIVE_LINK.findall(page.read_text()):
            path = target.split("#", 1)[0]
            if path and not (page.parent / path).exists():
                missing.append(f"{page.relative_to(REPO)}: {target}")
    assert not missing, missing
