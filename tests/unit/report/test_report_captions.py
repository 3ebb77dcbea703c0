"""The HTML report (snakemake --report): every report() item names its own caption file, and a caption shared by a
rule's several outputs (a {table} or {figure} wildcard) says something of its own for each of them."""

import re
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest

from peftstudy.report.outputs import outputs_of

RULES = Path(__file__).resolve().parents[3] / "workflow" / "rules"
REPORT = re.compile(r'report\(\s*"(?P<path>[^"]+)"\s*,\s*caption="(?P<caption>[^"]+)"')


def report_items():
    """(rule, output path, caption file) of every report() in workflow/rules/*.smk."""
    items = []
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        assert text.count("report(") == len(REPORT.findall(text)), f"{smk.name}: a report() without caption="
        for match in REPORT.finditer(text):
            rule = re.findall(r"^rule (\w+):", text[:match.start()], re.M)[-1]
            items.append((rule, match["path"], (smk.parent / match["caption"]).resolve()))
    return items


def render(caption: Path, **wildcards) -> str:
    """As snakemake renders a caption: jinja2 with the job's ``snakemake`` object."""
    snakemake = SimpleNamespace(wildcards=SimpleNamespace(study="s", **wildcards), output=["out"])
    return " ".join(jinja2.Template(caption.read_text()).render(snakemake=snakemake).split())


def test_every_report_item_has_its_own_existing_caption():
    items = report_items()
    assert len(items) >= 10
    captions = [caption for _, _, caption in items]
    assert len(set(captions)) == len(captions), "two report() items share a caption file"
    for rule, path, caption in items:
        assert caption.is_file(), f"rule {rule}: caption {caption} does not exist"
        if not re.search(r"\{(table|figure)\}", path):  # one output: one caption, whatever the wildcards
            assert len(render(caption)) > 100, f"rule {rule}: caption {caption.name} says next to nothing"


@pytest.mark.parametrize("rule,path,caption", [pytest.param(*item, id=item[0]) for item in report_items()
                                               if re.search(r"\{(table|figure)\}", item[1])])
def test_a_shared_caption_says_something_of_its_own_for_each_output(rule, path, caption):
    wildcard = re.search(r"\{(table|figure)\}", path)[1]
    texts = {name: render(caption, **{wildcard: name}) for name in outputs_of(rule)}
    assert len(texts) >= 2
    for name, text in texts.items():
        assert len(text) > 100, f"{caption.name}: no caption for {wildcard} {name!r}"
        assert "study ``s``" in text, f"{caption.name}: the caption for {name!r} does not name the study"
    assert len(set(texts.values())) == len(texts), f"{caption.name}: two {wildcard}s share a caption"
    assert render(caption, **{wildcard: "not_an_output"}) == "", f"{caption.name}: an unknown name got a caption"
