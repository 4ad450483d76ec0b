"""The documentation holds together: every relative link in README.md and docs/ resolves.

Markdown links and images (``[text](path)``, ``![alt](path)``) are checked against the file
system relative to the file that holds them; anchors (``#section``) are ignored, and so are
absolute URLs and links inside code (fenced blocks and inline spans), which are examples,
not links. The README stays a page for users: at most ``README_MAX_LINES`` lines, the depth
lives in docs/.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*(?:<([^>\n]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every markdown page under docs/ (results pages included)."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def relative_links(text: str) -> list[str]:
    """The relative link targets of a markdown text, anchors stripped, in order.

    Absolute URLs (any scheme), pure anchors and anything inside code are left out.
    """
    text = _INLINE_CODE.sub("", _FENCE.sub("", text))
    targets = []
    for bracketed, plain in _LINK.findall(text):
        target = bracketed or plain
        if _SCHEME.match(target) or target.startswith("#"):
            continue
        targets.append(unquote(target.split("#", 1)[0]))
    return targets


def missing_links(path: Path) -> list[str]:
    """Relative links of ``path`` whose target does not exist, relative to its folder."""
    return [t for t in relative_links(path.read_text(encoding="utf-8"))
            if not (path.parent / t).exists()]


def test_link_parser_by_hand(tmp_path):
    text = "\n".join([
        "See [privacy](docs/privacy.md#threat-model) and ![plot](../x.png).",
        "[web](https://flower.ai) [mail](mailto:a@b.c) [here](#layout)",
        "Code is not a link: `[a](nowhere.md)`.",
        "```python",
        "x = '[b](nowhere-either.md)'",
        "```",
        "[spaced](<docs/a b.md>) [escaped](docs/a%20b.md) [titled](docs/t.md \"title\")",
    ])
    assert relative_links(text) == ["docs/privacy.md", "../x.png", "docs/a b.md",
                                    "docs/a b.md", "docs/t.md"]
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "docs" / "here.md").write_text("x")
    page.write_text("[ok](here.md) [ok too](../docs/here.md#top) [gone](gone.md)")
    assert missing_links(page) == ["gone.md"]


def test_the_pages_exist():
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/privacy.md", "docs/architecture.md"} <= names
    assert any(n.startswith("docs/results/") for n in names)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    assert missing_links(path) == [], f"{path.relative_to(ROOT)}: links to missing files"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"
