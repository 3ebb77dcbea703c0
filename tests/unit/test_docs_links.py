"""Every relative link and image in README.md and docs/*.md points to a file that exists, and a #fragment to a heading
of that file, by GitHub's anchor rules: the README was split into docs/ and its sections will keep moving."""

import re
import unicodedata
from pathlib import Path

import pytest

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# [text](target) and ![alt](target), text over several lines allowed; an optional "title" after the target.
LINK = re.compile(r"(!?)\[([^\[\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:
MAX_IMAGE_BYTES = 250_000


def _outside_fences(text: str) -> list[str]:
    """The document's lines with fenced code blocks blanked (links and headings there are not links or headings)."""
    lines, fence = [], None
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def _plain(heading: str) -> str:
    """A heading's rendered text: code spans without backticks, links as their text, emphasis markers dropped."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*{1,3}|_{1,3})(\S(?:.*?\S)?)\1", r"\2", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case; every character but letters, marks, numbers, connector
    punctuation, spaces and hyphens dropped; spaces become hyphens (not collapsed)."""
    kept = [c for c in _plain(heading).strip().lower()
            if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc"]
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _outside_fences(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[bool, str]]:
    """(is an image, target) of every relative link and image in a Markdown file, code excluded."""
    text = "\n".join(_outside_fences(path.read_text(encoding="utf-8")))
    text = CODE_SPAN.sub(lambda m: "code", text)
    return [(bang == "!", target) for bang, _, target in LINK.findall(text) if not EXTERNAL.match(target)]


def broken_links(path: Path) -> list[str]:
    """What is wrong with each relative link of a Markdown file: a missing file, a missing heading, a large image."""
    problems = []
    for image, target in links(path):
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not destination.exists():
            problems.append(f"{path.name}: {target}: no file {destination}")
            continue
        if image and destination.stat().st_size > MAX_IMAGE_BYTES:
            problems.append(f"{path.name}: {target}: {destination.stat().st_size:,} bytes, over {MAX_IMAGE_BYTES:,}")
        if fragment and (destination.suffix != ".md" or fragment not in anchors(destination)):
            problems.append(f"{path.name}: {target}: no heading #{fragment} in {destination.name}")
    return problems


def documents(repository: Path) -> list[Path]:
    return [repository / "README.md", *sorted((repository / "docs").glob("*.md"))]


def test_every_relative_link_and_image_resolves(repository):
    docs = documents(repository)
    assert len(docs) > 1, "docs/*.md is missing"
    assert [problem for doc in docs for problem in broken_links(doc)] == []


def test_every_docs_file_is_linked_from_the_readme(repository):
    linked = {(repository / target.partition("#")[0]).resolve() for _, target in links(repository / "README.md")}
    assert [doc.name for doc in documents(repository)[1:] if doc.resolve() not in linked] == []


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Add a method / dataset / model / study", "add-a-method--dataset--model--study"),
    ("The demo's bases", "the-demos-bases"),
    ("Without setup.sh", "without-setupsh"),
    ("Same numbers: what it means, stage by stage", "same-numbers-what-it-means-stage-by-stage"),
    ("`peftstudy verify` and *export*", "peftstudy-verify-and-export"),
    ("(IA)³ and T5_base", "ia³-and-t5_base"),
])
def test_slug_follows_githubs_rules(heading, anchor):
    assert slug(heading) == anchor


def test_a_planted_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Part one\n\n## Part one\n\n```bash\n# not a heading\n```\n")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n## Here\n\n"
        "[fine](other.md) [fine](other.md#part-one) [fine](other.md#part-one-1) [fine](#here) "
        "![fine](picture.png) [external](https://example.org/missing.md) `[code](missing.md)`\n\n"
        "[missing file](nothing.md) [missing heading](other.md#not-a-heading) [over\ntwo lines](#nowhere)\n"
        "![missing image](images/none.png)\n\n```\n[in a fence](fenced.md)\n```\n")
    assert broken_links(doc) == [
        f"doc.md: nothing.md: no file {tmp_path / 'nothing.md'}",
        "doc.md: other.md#not-a-heading: no heading #not-a-heading in other.md",
        "doc.md: #nowhere: no heading #nowhere in doc.md",
        f"doc.md: images/none.png: no file {tmp_path / 'images' / 'none.png'}",
    ]
    assert anchors(tmp_path / "other.md") == {"other", "part-one", "part-one-1"}
