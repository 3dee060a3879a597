"""Every relative link in README.md and docs/**/*.md points at a file that exists (pages, figures, model
cards, result files), and every ``#anchor`` into a markdown page names one of its headings, so moving a page
or a figure cannot leave a dead link behind (issue 36: pages split into user pages and docs/notes/)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: ``[text](target)`` and ``![alt](target)``, not inside inline code; the target has no spaces
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (letters, digits, ``-``, ``_`` and
    spaces kept), spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in CODE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(CODE.sub("", page.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_slug_matches_github():
    assert github_slug("Generating with LM v2: guidance, source, lead, texture") == \
        "generating-with-lm-v2-guidance-source-lead-texture"
    assert github_slug("LM v2d (`default`): the pretraining") == "lm-v2d-default-the-pretraining"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    dead = []
    for target in links(page):
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            dead.append(f"{target} (no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest})")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            dead.append(f"{target} (no heading #{frag} in {dest.relative_to(REPO)})")
    assert not dead, f"{page.relative_to(REPO)}: dead links: {dead}"


def test_front_pages_stay_short():
    """The README is the front page (<= 250 lines) and docs/architecture.md a map (<= 120 lines, issue 36):
    long tables and studies belong on the docs pages and in docs/notes/."""
    for rel, most in (("README.md", 250), ("docs/architecture.md", 120)):
        n = len((REPO / rel).read_text().splitlines())
        assert n <= most, f"{rel}: {n} lines, more than {most}"
