"""The documentation: the README fits a first read, every relative link (and anchor) in it and
in docs/ resolves, and the configuration page is what GVMConfig generates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gvm_raft.config import config_markdown

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading for #{anchor}"


def test_the_readme_fits_a_first_read():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_configuration_page_is_generated_from_the_config():
    page = (ROOT / "docs/configuration.md").read_text()
    assert page == config_markdown(), (
        "docs/configuration.md is stale: run python -m gvm_raft.config > docs/configuration.md"
    )
