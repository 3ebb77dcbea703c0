"""Parsers for the offline corpora that ship with Debian, behind one registry (``CORPORA``).

Each corpus knows where Debian puts its files and which package ships them, so a missing
file produces an error that says what to install instead of a bare "No such file".
Parsers report malformed input as ``file:line``: these are large hand-edited files and a
bad line has to be findable.

Fine-tuning corpora yield records ``{"id", "input", "reference"}``; the pretraining corpus
yields plain text lines. Cleaning that needs the source's markup (dictd cross-references,
Debian's " ." paragraph separators) happens here; generic normalisation (whitespace,
filters, deduplication) happens in ``prepare``.
"""

from __future__ import annotations

import glob
import gzip
import lzma
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from peftstudy.data import synthetic

APT_LISTS = "/var/lib/apt/lists"


# ---------------------------------------------------------------------------- files


def read_bytes(path: Path) -> bytes:
    """File contents, decompressed by suffix: apt keeps its lists as .lz4 (or plain/.gz/.xz by
    configuration) and dictd's .dict.dz is gzip-compatible."""
    name = path.name
    if name.endswith(".lz4"):
        # The lz4 command (Debian package lz4, pulled in by apt's own lz4 support) is always
        # there when apt writes .lz4 lists, so no extra Python dependency is needed.
        command = shutil.which("lz4")
        if command is None:
            raise FileNotFoundError(f"{path}: reading .lz4 files needs the lz4 command (apt-get install lz4)")
        result = subprocess.run([command, "-dc", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            raise ValueError(f"{path}: lz4 could not decompress it: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout
    if name.endswith((".gz", ".dz")):
        return gzip.decompress(path.read_bytes())
    if name.endswith(".xz"):
        return lzma.decompress(path.read_bytes())
    return path.read_bytes()


def read_lines(path: Path) -> list[str]:
    """Lines split on "\\n" only: str.splitlines would also split inside text on U+2028, U+0085..."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as error:
        line = read_bytes(path)[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 ({error.reason})") from None
    return text.split("\n")


def collapse(text: str) -> str:
    return " ".join(text.split())


def drop_list_intro(text: str) -> str:
    """Remove a final sentence that only announced a list or example left out ("Features include:")."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return " ".join(sentences[:-1]) if sentences[-1].endswith(":") else text


def tidy(text: str) -> str:
    """Collapse whitespace and repair what removing markup leaves behind ("( )", "word ,")."""
    text = collapse(re.sub(r"<\s*>", "", text))
    text = re.sub(r"\(\s*(?:see|at|from|cf\.?)?\s*[,;:]?\s*\)", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    text = re.sub(r"([(])\s+", r"\1", text)
    text = re.sub(r"(?:(?<=[.!?])|^)\s*See(?: also)?\s*[.;]", "", text)  # a pointer whose target was removed
    return collapse(text)


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class SourceFile:
    default: str  # a path, or a glob pattern when several files may exist (apt lists)
    package: str | None  # the Debian package that ships it; None for apt's downloaded lists
    install: str  # what to run when it is missing


@dataclass(frozen=True)
class Corpus:
    name: str
    kind: str  # "pairs": yields {id, input, reference}; "text": yields plain lines
    files: Mapping[str, SourceFile]
    parse: Callable[[Mapping[str, list[Path]]], Iterator]
    # A text corpus of records ("headword: text"): the part of a line whose opening the boilerplate cap counts.
    body: Callable[[str], str] | None = None

    @property
    def packages(self) -> list[str]:
        return sorted({f.package for f in self.files.values() if f.package})

    def locate(self, overrides: Mapping[str, str] | None = None) -> dict[str, list[Path]]:
        """The files each role resolves to; ``overrides`` (spec ``paths``) replaces defaults by role."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.files))
        if unknown:
            raise ValueError(f"corpus {self.name!r}: unknown paths key(s) {unknown}; expected some of {sorted(self.files)}")
        located = {}
        for role, source in self.files.items():
            pattern = str(overrides.get(role, source.default))
            if any(char in pattern for char in "*?["):
                found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            else:
                found = [Path(pattern)] if Path(pattern).is_file() else []
            if not found:
                where = f"the Debian package {source.package}" if source.package else "apt's package index"
                raise FileNotFoundError(
                    f"{pattern}: not found; corpus {self.name!r} reads its {role} from {where} ({source.install})")
            located[role] = found
        return located

    def read(self, overrides: Mapping[str, str] | None = None) -> Iterator:
        return self.parse(self.locate(overrides))


# ---------------------------------------------------------------------------- Debian descriptions

# A description line that is part of a list or preformatted block rather than prose.
LIST_LINE = re.compile(r"^(\s|[*+\-•o]\s|\d+[.)]\s)")


def deb822(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Stanzas of an apt index as (first line number, {field: value}); continuation lines keep
    their leading whitespace after a "\\n" so that descriptions can be split into paragraphs."""
    stanza: dict[str, str] = {}
    start, field = 0, None
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            if stanza:
                yield start, stanza
            stanza, field = {}, None
        elif line[0] in " \t":
            if field is None:
                raise ValueError(f"{path}:{number}: continuation line outside a field: {line[:60]!r}")
            stanza[field] += "\n" + line
        else:
            name, colon, value = line.partition(":")
            if not colon or not name or any(char.isspace() for char in name):
                raise ValueError(f"{path}:{number}: expected 'Field: value', got {line[:60]!r}")
            if not stanza:
                start = number
            field = name
            stanza[field] = value.strip()
    if stanza:
        yield start, stanza


def _required(stanza: Mapping[str, str], field: str, path: Path, number: int) -> str:
    if field not in stanza:
        raise ValueError(f"{path}:{number}: stanza has no {field!r} field")
    return stanza[field]


def split_description(text: str) -> tuple[str, str]:
    """(synopsis, first prose paragraph of the long description).

    Only the first paragraph is kept: it is the package's general pitch, while later
    paragraphs repeat across the binaries of one source package ("This package contains
    the data files") and lists are feature inventories rather than prose. A paragraph that
    is more than half list lines is skipped; list lines inside a prose paragraph are dropped, and so
    is a trailing sentence that only introduced the removed list ("Features include:").
    """
    synopsis, _, body = text.partition("\n")
    paragraphs: list[list[str]] = [[]]
    for raw in body.split("\n") if body else []:
        line = raw[1:]  # the one space that marks a continuation line
        if line.strip() == ".":
            paragraphs.append([])
        else:
            paragraphs[-1].append(line)
    for lines in paragraphs:
        prose = [line for line in lines if not LIST_LINE.match(line)]
        if prose and len(prose) * 2 >= len(lines):
            reference = drop_list_intro(tidy(URL.sub("", " ".join(prose))))
            if reference:
                return collapse(synopsis), reference
    return collapse(synopsis), ""


def parse_debian_descriptions(paths: Mapping[str, list[Path]]) -> Iterator[dict]:
    """One record per package: features (name, section, synopsis, debtags) -> long description.

    The synopsis goes before the tags so that a model with a short source budget loses
    tags, not the synopsis, when the input is truncated. When several list files name the
    same package, the first file (sorted by name) wins.
    """
    features: dict[str, tuple[str, str]] = {}
    for path in paths["packages"]:
        for number, stanza in deb822(path):
            name = _required(stanza, "Package", path, number)
            tags = ", ".join(t.strip() for t in stanza.get("Tag", "").replace("\n", " ").split(",") if t.strip())
            features.setdefault(name, (stanza.get("Section", ""), tags))
    seen: set[str] = set()
    for path in paths["translations"]:
        for number, stanza in deb822(path):
            name = _required(stanza, "Package", path, number)
            description = _required(stanza, "Description-en", path, number)
            if name in seen:
                continue
            seen.add(name)
            synopsis, reference = split_description(description)
            section, tags = features.get(name, ("", ""))
            fields = [("name", name), ("section", section), ("summary", synopsis), ("tags", tags)]
            yield {"id": name, "input": " | ".join(f"{k}: {v}" for k, v in fields if v), "reference": reference}


# ---------------------------------------------------------------------------- dictd dictionaries

DICTD_BASE64 = {char: value for value, char in
                enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
CROSS_REFERENCE = re.compile(r"\{\s*([^{}]*?)\s*\}")
LINK_TARGET = re.compile(r"\s*\(\S*[/.]\S*\)$")  # "{wiki entry (http://...)}", "{help (help.html)}"
# A URL stops before brackets and quotes, and does not swallow the sentence's final punctuation.
URL = re.compile(r"\b(?:(?:https?|ftp)://|mailto:)[^\s<>(){}\"]*[^\s<>(){}\".,;:!?']")
DATE_STAMP = re.compile(r"\(\d{4}-\d{2}-\d{2}\)")
SENSE_NUMBER = re.compile(r"^\d+\.\s+")


def dictd_number(text: str, path: Path, number: int) -> int:
    value = 0
    for char in text:
        if char not in DICTD_BASE64:
            raise ValueError(f"{path}:{number}: {text!r} is not a dictd base64 number")
        value = value * 64 + DICTD_BASE64[char]
    return value


def dictd_entries(index: Path, dictionary: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(headword lines, body paragraphs) of each distinct entry, in index order.

    Several index lines point at one entry (aliases); it is yielded once. dictd's own
    ``00-database-*`` entries are metadata, not definitions.
    """
    data = read_bytes(dictionary)
    seen: set[tuple[int, int]] = set()
    for number, line in enumerate(read_lines(index), start=1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{index}:{number}: expected 'headword<TAB>offset<TAB>length', got {line[:60]!r}")
        headword = parts[0]
        offset, length = dictd_number(parts[1], index, number), dictd_number(parts[2], index, number)
        if headword.startswith("00-database") or headword.startswith("00database") or (offset, length) in seen:
            continue
        seen.add((offset, length))
        if offset + length > len(data):
            raise ValueError(f"{index}:{number}: entry {headword!r} points past the end of {dictionary}")
        lines = data[offset: offset + length].decode("utf-8", errors="replace").split("\n")
        while lines and not lines[0].strip():
            lines.pop(0)
        header = []
        while lines and lines[0].strip():
            header.append(lines.pop(0).strip())
        paragraphs = [collapse(p) for p in re.split(r"\n\s*\n", "\n".join(lines))]
        yield header, [p for p in paragraphs if p]


def resolve_cross_references(text: str) -> str:
    """"{like this}" -> "like this"; a link target in parentheses inside the braces is dropped."""
    return CROSS_REFERENCE.sub(lambda match: LINK_TARGET.sub("", match.group(1)), text)


def clean_foldoc(paragraph: str) -> str:
    """Plain prose from a FOLDOC paragraph: no sense number, <category> tags, braces, URLs, dates."""
    if paragraph.startswith("["):  # a bibliographic citation, not a definition
        return ""
    text = SENSE_NUMBER.sub("", paragraph)
    text = re.sub(r"<[^<>]*>", "", text)
    text = resolve_cross_references(text)
    text = URL.sub("", DATE_STAMP.sub("", text)).replace("__", "")
    return tidy(text)


def clean_jargon(paragraph: str) -> str:
    """Plain prose from a Jargon File paragraph: no sense number, leading [usage/etymology] tags, braces."""
    text = SENSE_NUMBER.sub("", paragraph)
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", text)
    return tidy(URL.sub("", resolve_cross_references(text)))


def _dictd_parser(clean: Callable[[str], str]) -> Callable[[Mapping[str, list[Path]]], Iterator[dict]]:
    def parse(paths: Mapping[str, list[Path]]) -> Iterator[dict]:
        """term -> first paragraph of its definition that is still prose after cleaning."""
        seen_ids: dict[str, int] = {}
        for index, dictionary in zip(paths["index"], paths["dict"], strict=True):
            for header, paragraphs in dictd_entries(index, dictionary):
                term = header[0].split("%%%")[0].strip() if header else ""
                if not term:
                    continue
                reference = next((text for text in (drop_list_intro(clean(p)) for p in paragraphs) if text), "")
                seen_ids[term] = seen_ids.get(term, 0) + 1
                record_id = term if seen_ids[term] == 1 else f"{term} ({seen_ids[term]})"
                yield {"id": record_id, "input": f"term: {term}", "reference": reference}
    return parse


# ---------------------------------------------------------------------------- WordNet glosses

QUOTED = re.compile(r'"([^"]+)"')


def gloss_lines(gloss: str) -> list[str]:
    """A gloss is 'definition; "example"; "example"': the definition and each example, one line each."""
    split = gloss.find('; "')
    if gloss.lstrip().startswith('"'):
        definition, examples = "", gloss
    elif split < 0:
        definition, examples = gloss, ""
    else:
        definition, examples = gloss[:split], gloss[split:]
    lines = [tidy(definition).rstrip(";").strip()]
    lines += [tidy(example) for example in QUOTED.findall(examples)]
    return [line for line in lines if line]


def parse_wordnet_glosses(paths: Mapping[str, list[Path]]) -> Iterator[str]:
    """Definitions and example sentences from WordNet's data.* files (general English text)."""
    for path in paths["data"]:
        for number, line in enumerate(read_lines(path), start=1):
            if not line.strip() or line.startswith("  "):  # blank, or the licence header
                continue
            synset, bar, gloss = line.partition(" | ")
            if not bar or not synset[:8].isdigit():
                raise ValueError(f"{path}:{number}: expected a synset line '<offset> ... | <gloss>', got {line[:60]!r}")
            yield from gloss_lines(gloss)


# ---------------------------------------------------------------------------- registry

def _apt(pattern: str) -> SourceFile:
    return SourceFile(f"{APT_LISTS}/{pattern}", None, "run apt-get update with a Debian 'main' source configured")


def _dictd(name: str, package: str) -> dict[str, SourceFile]:
    install = f"apt-get install {package}"
    return {"index": SourceFile(f"/usr/share/dictd/{name}.index", package, install),
            "dict": SourceFile(f"/usr/share/dictd/{name}.dict.dz", package, install)}


CORPORA: dict[str, Corpus] = {
    # Only the 'main' component: every package there is DFSG-free, so are its descriptions.
    "debian_descriptions": Corpus("debian_descriptions", "pairs", {
        "translations": _apt("*_main_i18n_Translation-en*"),
        "packages": _apt("*_main_binary-*_Packages*"),
    }, parse_debian_descriptions),
    "foldoc": Corpus("foldoc", "pairs", _dictd("foldoc", "dict-foldoc"), _dictd_parser(clean_foldoc)),
    "jargon": Corpus("jargon", "pairs", _dictd("jargon", "dict-jargon"), _dictd_parser(clean_jargon)),
    "wordnet_glosses": Corpus("wordnet_glosses", "text", {
        "data": SourceFile("/usr/share/wordnet/data.*", "wordnet-base", "apt-get install wordnet-base"),
    }, parse_wordnet_glosses),
    # No files: prepare generates it from the spec's seed; parse() here gives a default sample.
    "synthetic": Corpus("synthetic", "pairs", {}, lambda paths: synthetic.pairs(1000, 0)),
}


def _reference_text(pairs: Corpus) -> Corpus:
    """A pairs corpus's references as a pretraining text corpus (one line each): the prose of every record,
    which the demo's bases pretrain on once the fine-tuning datasets' evaluation examples are taken out."""
    return Corpus(f"{pairs.name}_text", "text", pairs.files,
                  lambda paths: (record["reference"] for record in pairs.parse(paths) if record["reference"]))


def debian_record_line(record: Mapping) -> str:
    """A package as its archive entry reads: 'name (section): synopsis. long description'."""
    fields = debian_fields(record)
    section = f" ({fields['section']})" if fields.get("section") else ""
    synopsis = fields.get("summary", "").rstrip(".")
    return f"{fields['name']}{section}: {synopsis}. {record['reference']}"


def dictionary_record_line(record: Mapping) -> str:
    """An entry as a dictionary prints it: 'term: definition'."""
    return f"{record['input'].removeprefix('term: ')}: {record['reference']}"


def _record_text(pairs: Corpus, line: Callable[[Mapping], str], body: Callable[[str], str]) -> Corpus:
    """A pairs corpus's records as pretraining text, a line each with its headword (and for a package its
    synopsis) before the prose: a base learns from them that the prose is about what precedes it, which a
    fine-tuned model needs before it can use its input. The evaluation examples are taken out as for
    _reference_text."""
    return Corpus(f"{pairs.name}_records_text", "text", pairs.files,
                  lambda paths: (line(record) for record in pairs.parse(paths) if record["reference"]), body)


def _after_synopsis(line: str) -> str:
    return line.partition(": ")[2].partition(". ")[2]


def _after_headword(line: str) -> str:
    return line.partition(": ")[2]


for _pairs in ("debian_descriptions", "foldoc", "jargon"):
    CORPORA[f"{_pairs}_text"] = _reference_text(CORPORA[_pairs])
CORPORA["debian_descriptions_records_text"] = _record_text(CORPORA["debian_descriptions"], debian_record_line,
                                                           _after_synopsis)
for _pairs in ("foldoc", "jargon"):
    CORPORA[f"{_pairs}_records_text"] = _record_text(CORPORA[_pairs], dictionary_record_line, _after_headword)


# ---------------------------------------------------------------------------- derived task corpora
# Classification and extractive-QA stand-ins (seeds 001/004) built from a pairs corpus's records, so they
# share its snapshot and provenance. Both keep only fields the task may see: no label leaks into the input.


def debian_fields(record: Mapping) -> dict[str, str]:
    """'name: x | section: y | summary: z' (parse_debian_descriptions' input) back into fields."""
    fields = {}
    for part in record["input"].split(" | "):
        key, separator, value = part.partition(": ")
        if not separator:
            raise ValueError(f"record {record['id']!r}: feature {part[:40]!r} is not 'key: value'")
        fields[key] = value
    return fields


def debian_sections(records: Iterable[Mapping]) -> Iterator[dict]:
    """Text classification: a package's long description -> its archive section (perl, python, net, ...)."""
    for record in records:
        section = debian_fields(record).get("section", "")
        if section and record["reference"]:
            yield {"id": record["id"], "input": record["reference"], "reference": section}


def answer_span(answer: str, context: str, *, ignore_case: bool = True) -> int | None:
    """Start of the answer as a whole word in the context, or None."""
    flags = re.IGNORECASE if ignore_case else 0
    match = re.search(r"(?<![\w.+-])" + re.escape(answer) + r"(?![\w+-])", context, flags=flags)
    return match.start() if match else None


# Archive sections of one programming language, and how descriptions name it (case-sensitive: "Go", "R").
SECTION_LANGUAGES = {
    "perl": ["Perl"], "python": ["Python"], "rust": ["Rust"], "golang": ["Go", "Golang"],
    "javascript": ["JavaScript", "Node.js"], "ruby": ["Ruby"], "java": ["Java"], "php": ["PHP"],
    "haskell": ["Haskell"], "ocaml": ["OCaml"], "gnu-r": ["R"], "lisp": ["Common Lisp", "Lisp"],
}


def _qa_record(record_id: str, question: str, context: str, start: int, length: int) -> dict:
    answer = context[start: start + length]
    return {"id": record_id, "input": f"question: {question} context: {context}", "reference": answer,
            "question": question, "context": context, "answers": [answer], "answer_start": [start]}


def debian_package_qa(records: Iterable[Mapping]) -> Iterator[dict]:
    """Extractive QA in SQuAD v1.1's shape over a package's long description (the context), one question
    per package so that no context is shared between splits: which programming language the package is
    for, when its section is a language's and the description names it; otherwise which package the
    synopsis describes, when the description names the package. The answer is the span as written."""
    for record in records:
        fields = debian_fields(record)
        context, summary, name = record["reference"], fields.get("summary", ""), fields["name"]
        if not context:
            continue
        for language in SECTION_LANGUAGES.get(fields.get("section", ""), []):
            start = answer_span(language, context, ignore_case=False)
            if start is not None:
                yield _qa_record(record["id"], f"Which programming language is the package {name} for?", context,
                                 start, len(language))
                break
        else:
            start = answer_span(name, context) if summary else None
            if start is not None:
                yield _qa_record(record["id"], f"Which package is described as: {summary}?", context, start, len(name))


@dataclass(frozen=True)
class DerivedCorpus:
    name: str
    base: str  # the pairs corpus whose records it transforms
    task: str  # the task its records are for (see prepare.TASKS)
    derive: Callable[[Iterable[Mapping]], Iterator[dict]]


DERIVED: dict[str, DerivedCorpus] = {
    "debian_sections": DerivedCorpus("debian_sections", "debian_descriptions", "classification", debian_sections),
    "debian_package_qa": DerivedCorpus("debian_package_qa", "debian_descriptions", "extractive_qa", debian_package_qa),
}


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        known = ", ".join(sorted([*CORPORA, *DERIVED]))
        raise ValueError(f"unknown corpus {name!r}; known corpora: {known}")
    return CORPORA[name]
