"""Parsers of the Debian-shipped corpora, on tiny fixtures in the real formats (and on the real files when present)."""

import gzip
import shutil
from pathlib import Path

import pytest

from peftstudy.data import sources
from peftstudy.data.sources import CORPORA

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DEBIAN = {"translations": str(FIXTURES / "debian/Translation-en"), "packages": str(FIXTURES / "debian/Packages")}

DEBIAN_RECORDS = [
    {"id": "foo-data", "input": "name: foo-data | section: misc | summary: data files for foo-edit",
     "reference": "Foo-edit is a small editor for foo files. It keeps the original layout."},
    {"id": "foo-edit",
     "input": "name: foo-edit | section: editors | summary: edit foo files quickly"
              " | tags: role::program, use::editing, works-with::text",
     "reference": "Foo-edit is a small editor for foo files. It keeps the original layout."},
    {"id": "libfoo-dev",
     "input": "name: libfoo-dev | section: libdevel | summary: development files for libfoo"
              " | tags: devel::library, role::devel-lib",
     "reference": "libfoo reads foo files and writes them back unchanged."},
    {"id": "netscan", "input": "name: netscan | summary: scan networks for hosts",
     "reference": "Netscan finds hosts on a local network. It is written in C and needs no configuration."},
    {"id": "synopsis-only", "input": "name: synopsis-only | section: utils | summary: a package without a long description",
     "reference": ""},
]


def dictd_paths(name):
    return {"index": str(FIXTURES / f"dictd/{name}.index"), "dict": str(FIXTURES / f"dictd/{name}.dict.dz")}


def test_debian_descriptions_join_translations_with_packages():
    assert list(CORPORA["debian_descriptions"].read(DEBIAN)) == DEBIAN_RECORDS


@pytest.mark.skipif(shutil.which("lz4") is None, reason="the lz4 command is not installed")
def test_debian_lz4_lists_read_like_plain_ones():
    paths = {role: path + ".lz4" for role, path in DEBIAN.items()}
    assert list(CORPORA["debian_descriptions"].read(paths)) == DEBIAN_RECORDS


def test_description_keeps_first_prose_paragraph_and_drops_lists():
    text = "synopsis\n Intro:\n  * one\n  * two\n .\n Real   prose here. Items:\n  - a"
    assert sources.split_description(text) == ("synopsis", "Real prose here.")
    assert sources.split_description("only a synopsis") == ("only a synopsis", "")


def test_foldoc_entries_are_cleaned_and_aliases_and_metadata_skipped():
    assert list(CORPORA["foldoc"].read(dictd_paths("foldoc"))) == [
        {"id": "ALGOL Mini", "input": "term: ALGOL Mini", "reference": "An algorithmic language for teaching."},
        {"id": "dump", "input": "term: dump", "reference": "To copy memory."},
        {"id": "widget", "input": "term: widget", "reference": "A graphical control that a user can click."},
    ]


def test_jargon_entries_lose_sense_numbers_and_usage_tags():
    assert list(CORPORA["jargon"].read(dictd_paths("jargon"))) == [
        {"id": "frob", "input": "term: frob", "reference": "To fiddle with a knob; see also twiddle."},
        {"id": "kluge", "input": "term: kluge", "reference": "A clever programming trick."},
    ]


def test_cleaning_helpers():
    assert sources.dictd_number("Cx", Path("x"), 1) == 2 * 64 + 49
    assert sources.resolve_cross_references("a {b (b.html)} and {c}") == "a b and c"
    assert sources.clean_foldoc("<hardware> A {disk}, see http://x.org/d. (1999-01-01)") == "A disk, see."
    assert sources.clean_jargon("2. [Usenet] [rare] To {grok\n }.") == "To grok."
    assert sources.gloss_lines('a dog; "the dog barked"; "my dog"  ') == ["a dog", "the dog barked", "my dog"]


def test_wordnet_glosses_split_definitions_and_examples_and_skip_licence():
    assert list(CORPORA["wordnet_glosses"].read({"data": str(FIXTURES / "wordnet/data.noun")})) == [
        "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)",
        "an assemblage of parts that is regarded as a single entity",
        "how big is that part compared to the whole?",
        "the team is a unit",
        "a whole (a thing or person) of the same kind or category as another",
        "lard was also used, though its congener, butter, was more frequently employed",
        "the American shopkeeper differs from his European congener",
    ]


def test_missing_file_names_the_file_and_the_package(tmp_path):
    missing = tmp_path / "foldoc.index"
    with pytest.raises(FileNotFoundError, match=r"foldoc\.index.*dict-foldoc.*apt-get install dict-foldoc"):
        CORPORA["foldoc"].locate({"index": str(missing)})
    with pytest.raises(FileNotFoundError, match=r"nothing-\*.*apt-get update"):
        CORPORA["debian_descriptions"].locate({"translations": str(tmp_path / "nothing-*")})


def test_unknown_corpus_or_paths_key_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown corpus 'nope'"):
        sources.get_corpus("nope")
    with pytest.raises(ValueError, match="unknown paths key"):
        CORPORA["foldoc"].locate({"idx": "x"})


@pytest.mark.parametrize("corpus, role, content, where", [
    ("debian_descriptions", "packages", "Package: a\nSection: x\nthis line has no colon\n", ":3:"),
    ("debian_descriptions", "translations", " continuation first\n", ":1:"),
    ("wordnet_glosses", "data", "  1 licence\n00001740 03 n 01 entity 0 000 no gloss bar\n", ":2:"),
])
def test_malformed_files_name_file_and_line(tmp_path, corpus, role, content, where):
    bad = tmp_path / "bad"
    bad.write_text(content)
    paths = {**(DEBIAN if corpus == "debian_descriptions" else {}), role: str(bad)}
    with pytest.raises(ValueError, match=f"{bad}{where}"):
        list(CORPORA[corpus].read(paths))


def test_malformed_dictd_index_names_file_and_line(tmp_path):
    index, data = tmp_path / "d.index", tmp_path / "d.dict.dz"
    data.write_bytes(gzip.compress(b"word\n\n   text\n"))
    index.write_text("word\tA\tO\nbroken line\n")
    with pytest.raises(ValueError, match=f"{index}:2:"):
        list(CORPORA["jargon"].read({"index": str(index), "dict": str(data)}))
    index.write_text("word\tA\tZZ\n")
    with pytest.raises(ValueError, match=f"{index}:1: entry 'word' points past the end"):
        list(CORPORA["jargon"].read({"index": str(index), "dict": str(data)}))


def _real(corpus):
    try:
        return CORPORA[corpus].locate()
    except FileNotFoundError as error:
        pytest.skip(f"real system files absent: {error}")


def test_real_dictd_files_parse():
    for name in ("foldoc", "jargon"):
        records = list(CORPORA[name].parse(_real(name)))
        assert len(records) > 1000
        assert not any(r["id"].startswith("00-database") for r in records)
        assert len({r["id"] for r in records}) == len(records)
        usable = [r for r in records if r["reference"]]
        assert len(usable) > 0.9 * len(records)
        assert not any("{" in r["reference"] and "}" in r["reference"] for r in usable[:200])


def test_real_wordnet_and_debian_lists_parse():
    located = _real("wordnet_glosses")
    adverbs = [path for path in located["data"] if path.name == "data.adv"]  # the smallest file: fast
    lines = list(CORPORA["wordnet_glosses"].parse({"data": adverbs}))
    assert len(lines) > 3000 and all(line == line.strip() and line for line in lines)
    located = _real("debian_descriptions")
    smallest = {role: [min(paths, key=lambda p: p.stat().st_size)] for role, paths in located.items()}
    records = list(CORPORA["debian_descriptions"].parse(smallest))
    assert records and all(r["input"].startswith(f"name: {r['id']} |") for r in records)
