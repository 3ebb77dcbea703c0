"""Build the committed data snapshots from the Debian system files.

    python -m peftstudy.data.snapshot --out data/snapshots

The demo study reads these snapshots (``source: snapshot``) so that it runs identically on
machines without the Debian packages and is not at the mercy of the next archive update.
The snapshots hold already-cleaned, length-filtered, deduplicated samples; the MANIFEST is
date-free so that rebuilding from the same files gives byte-identical output.
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path
from typing import Iterable, Mapping

from peftstudy import io
from peftstudy.data.prepare import (
    clean_and_filter,
    deduplicate,
    normalise,
    subsample,
    system_provenance,
)
from peftstudy.data.sources import get_corpus

SEED = 2024
# corpus -> how many records to keep (None: all) and which reference lengths count as usable.
PLAN: dict[str, dict] = {
    "debian_descriptions": {"max_examples": 4000, "filter": {"min_reference_words": 10, "max_reference_words": 80}},
    "foldoc": {"max_examples": 4000, "filter": {"min_reference_words": 8, "max_reference_words": 80}},
    "jargon": {"max_examples": None, "filter": {"min_reference_words": 5, "max_reference_words": 120}},
    "wordnet_glosses": {"max_lines": 40000},
    # Pretraining text for the demo's bases: every unique record (headword, then prose) before the fine-tuning
    # filters.
    "debian_descriptions_records_text": {"max_lines": None},
    "foldoc_records_text": {"max_lines": None},
    "jargon_records_text": {"max_lines": None},
}


def _write_gzip_text(path: Path, text: str) -> None:
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))  # mtime=0: byte-identical rebuilds


def build_snapshots(out_dir: Path, *, plan: Mapping[str, dict] = PLAN, paths: Mapping[str, Mapping] | None = None,
                    seed: int = SEED, only: Iterable[str] = ()) -> dict:
    """Write one snapshot per corpus in ``plan``, then MANIFEST.json and LICENSES.md; return the manifest."""
    out_dir = Path(out_dir)
    paths = paths or {}
    entries = {}
    previous = out_dir / "MANIFEST.json"
    if only:  # the other corpora keep their snapshot and their MANIFEST entry
        unknown = sorted(set(only) - set(plan))
        if unknown:
            raise ValueError(f"--only: unknown corpora {unknown}; the plan has {sorted(plan)}")
        entries = {name: entry for name, entry in (io.read_json(previous)["corpora"] if previous.is_file() else {}).items()
                   if name not in only}
    for name, selection in plan.items():
        if only and name not in only:
            continue
        corpus = get_corpus(name)
        located = corpus.locate(paths.get(name))
        parsed = list(corpus.parse(located))
        if corpus.kind == "text":
            unique = list(dict.fromkeys(line for line in map(normalise, parsed) if line))
            kept = subsample(unique, selection.get("max_lines"), seed)
            target = out_dir / f"{name}.txt.gz"
            _write_gzip_text(target, "".join(line + "\n" for line in kept))
            counts = {"parsed": len(parsed), "unique": len(unique), "lines": len(kept)}
        else:
            usable, dropped = clean_and_filter(parsed, selection.get("filter"))
            usable, duplicates = deduplicate(usable)
            kept = subsample(usable, selection.get("max_examples"), seed)
            target = out_dir / f"{name}.jsonl.gz"
            io.write_jsonl(target, kept)
            counts = {"parsed": len(parsed), "usable": len(usable), "records": len(kept),
                      "dropped": dict(sorted({**dropped, **duplicates}.items()))}
        entries[name] = {"file": target.name, "bytes": target.stat().st_size, "sha256": io.sha256_file(target),
                         "selection": dict(selection), **counts, **system_provenance(corpus, located)}
    entries = {name: entries[name] for name in plan if name in entries}
    manifest = {"builder": "python -m peftstudy.data.snapshot", "seed": seed, "corpora": entries,
                "files": {"wordnet_lexnames.tsv": write_lexnames(out_dir / "wordnet_lexnames.tsv")}}
    io.write_text(out_dir / "LICENSES.md", licences_markdown(manifest))
    io.write_json(out_dir / "MANIFEST.json", manifest)
    return manifest


LEXNAMES_MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")


def write_lexnames(target: Path, man_page: Path = LEXNAMES_MAN_PAGE) -> dict:
    """The 45-line table of lexnames(5WN) (number, name, description), for data.wordnet."""
    lines = [line for line in gzip.decompress(man_page.read_bytes()).decode("utf-8").splitlines()
             if re.match(r"^[0-9]{2}\t", line)]
    if len(lines) != 45:
        raise ValueError(f"{man_page}: expected the 45 lines of the lexnames table, found {len(lines)}")
    io.write_text(target, "".join(line + "\n" for line in lines))
    return {"bytes": target.stat().st_size, "sha256": io.sha256_file(target), "source": str(man_page)}


WORDNET_LICENCE = """\
This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license.  By obtaining, using
and/or copying this software and database, you agree that you have
read, understood, and will comply with these terms and conditions.:

Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or
royalty is hereby granted, provided that you agree to comply with
the following copyright notice and statements, including the disclaimer,
and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal
use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR
IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT-
ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE
OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT
INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR
OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in
advertising or publicity pertaining to distribution of the software
and/or database.  Title to copyright in this software, database and
any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same.
"""


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())


def licences_markdown(manifest: Mapping) -> str:
    """Per source: licence, copyright holder, provenance. Notices that must travel with copies are quoted in full."""
    def versions(name: str) -> str:
        packages = manifest["corpora"].get(name, {}).get("debian_packages", {})
        return ", ".join(f"{p} {v or '(version unknown)'}" for p, v in packages.items()) or "n/a"

    return f"""# Licences of the data snapshots

These files are cleaned samples extracted by `python -m peftstudy.data.snapshot` from
files that Debian installs; `MANIFEST.json` lists the exact source files and their sha256.
Each sample is a modified (extracted, cleaned, filtered) version of its source.

## debian_descriptions.jsonl.gz — Debian package descriptions

* Source: Debian's archive indexes for the `main` component, as downloaded by apt
  (`/var/lib/apt/lists/*_main_i18n_Translation-en*`, the English descriptions maintained by
  the Debian Description Translation Project, joined with `*_main_binary-*_Packages*` for
  section and debtags). See `MANIFEST.json` for the suites and hashes.
* Copyright: each description belongs to the authors of its package (Debian maintainers
  and upstream authors); it is part of that package's `debian/control` and is distributed
  under that package's licence, recorded in the package's `/usr/share/doc/<package>/copyright`.
* Licence: every package in Debian `main` is free software under the Debian Free Software
  Guidelines; the index files themselves carry no separate licence. Redistributing
  descriptions here follows Debian's own redistribution of them in its archive mirrors.

## *_records_text.txt.gz — the same three sources as pretraining text

`debian_descriptions_records_text.txt.gz`, `foldoc_records_text.txt.gz` and `jargon_records_text.txt.gz` hold
every unique record of the corpus of the same name below, one a line, as its source presents it (a package:
`name (section): synopsis. description`; a dictionary entry: `term: definition`), under that corpus's licence
and notices. The demo's base models are pretrained on them (after every example of the demo's validation and
test splits is taken out), not fine-tuned on them.

## foldoc.jsonl.gz — Free On-line Dictionary of Computing

* Source: Debian package `dict-foldoc` ({versions("foldoc")}),
  `/usr/share/dictd/foldoc.index` and `foldoc.dict.dz`; upstream http://foldoc.org/Dictionary.gz.
* Copyright: FOLDOC, Copyright 1993 by Denis Howe (editor) and contributors. Please refer
  to it as "The Free On-line Dictionary of Computing, http://foldoc.org/, Editor Denis Howe".
* Licence: GNU Free Documentation License, Version 1.1 or any later version, with no
  Invariant Sections, Front- or Back-Cover Texts (full text: https://www.gnu.org/licenses/fdl-1.3.txt;
  on Debian `/usr/share/common-licenses/GFDL-1.3`). The notice as distributed:

{_indent('''Copyright 1993 by Denis Howe

Permission is granted to copy, distribute and/or modify this
document under the terms of the GNU Free Documentation
License, Version 1.1 or any later version published by the
Free Software Foundation; with no Invariant Sections, Front-
or Back-Cover Texts.''')}
* Debian adds `Dictionary.debian` entries to this dictionary; they are
  "Copyright (C) 2000-2004 by Joey Hess <joey@kitenet.net> and Robert D. Hilliard
  <hilliard@debian.org>", distributed under: "Permission is granted to make and distribute
  verbatim copies of this file or works derived from it, provided that every such copy or
  derived work carries the above copyright notice and is distributed under terms identical
  to these."

## jargon.jsonl.gz — The Jargon File

* Source: Debian package `dict-jargon` ({versions("jargon")}),
  `/usr/share/dictd/jargon.index` and `jargon.dict.dz`; upstream http://catb.org/jargon/
  ("The on-line hacker Jargon File, version 4.4.7, 29 Dec 2003", Eric S. Raymond, ed.).
* Licence: public domain. "This document (the Jargon File) is in the public domain, to be
  freely used, shared, and modified. [...] Please extend the courtesy of proper citation
  when you quote the File, ideally with a version number": Jargon File 4.4.7.

## wordnet_lexnames.tsv — WordNet 3.0 lexicographer file names

* Source: Debian package `wordnet-base` ({versions("wordnet_glosses")}), the table in the man page
  `{LEXNAMES_MAN_PAGE}` (its 45 lines `number<TAB>name<TAB>description`). nltk's WordNet reader needs a
  `lexnames` file beside the database files, and no Debian package installs it as a file; METEOR uses it.
* Copyright and licence: WordNet 3.0, as for `wordnet_glosses.txt.gz` below.

## wordnet_glosses.txt.gz — WordNet 3.0 glosses and example sentences

* Source: Debian package `wordnet-base` ({versions("wordnet_glosses")}),
  `/usr/share/wordnet/data.{{adj,adv,noun,verb}}`; upstream https://wordnet.princeton.edu/.
* Copyright: WordNet 3.0 Copyright 2006 by Princeton University (Cognitive Science
  Laboratory). Used only to pretrain the demo's small base models.
* Licence: the WordNet 3.0 licence, which must appear on all copies:

{_indent(WORDNET_LICENCE)}{gfdl_appendix()}"""


GFDL_TEXT = Path("/usr/share/common-licenses/GFDL-1.3")  # shipped by Debian's base-files


def gfdl_appendix() -> str:
    """The GFDL asks modified copies (the FOLDOC sample is one) to carry the licence text itself."""
    if not GFDL_TEXT.is_file():
        return "\n## GNU Free Documentation License\n\nSee https://www.gnu.org/licenses/fdl-1.3.txt\n"
    return ("\n## Appendix: GNU Free Documentation License, version 1.3 (applies to foldoc.jsonl.gz)\n\n"
            + _indent(GFDL_TEXT.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/snapshots"), help="snapshot directory (default: %(default)s)")
    parser.add_argument("--only", nargs="+", default=(), metavar="CORPUS",
                        help="rebuild these corpora only; the others keep their files and MANIFEST entries")
    args = parser.parse_args(argv)
    manifest = build_snapshots(args.out, only=args.only)
    for name, entry in manifest["corpora"].items():
        count = entry.get("records", entry.get("lines"))
        print(f"{entry['file']}: {count} {'lines' if 'lines' in entry else 'records'}, {entry['bytes']} bytes")


if __name__ == "__main__":
    main()
