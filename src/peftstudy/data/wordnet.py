"""A local WordNet 3.0 database in the layout nltk reads, for METEOR's synonym matching.

The database files come from Debian's ``wordnet-base`` and ``wordnet-sense-index`` packages
(``/usr/share/wordnet``); nltk also needs a ``lexnames`` file that no package installs; it is written from the table of the
``lexnames(5WN)`` man page, shipped as ``data/snapshots/wordnet_lexnames.tsv`` (see its LICENSES entry). The files are copied, not linked: nltk
3.10 refuses a symlinked corpus directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from peftstudy import io

SYSTEM_WORDNET = Path("/usr/share/wordnet")
DATABASE_FILES = [f"{kind}.{pos}" for kind in ("data", "index") for pos in ("adj", "adv", "noun", "verb")] + [
    f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb")] + ["index.sense"]


# lexnames(5WN): the third field is the syntactic category, which is also the file name's prefix.
SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_file(table_lines: list[str]) -> str:
    """The `lexnames` file (number, name, category) from the man page's table (number, name, description)."""
    rows = []
    for line in table_lines:
        number, name, _description = line.split("\t")
        rows.append(f"{number}\t{name}\t{SYNTACTIC_CATEGORY[name.split('.')[0]]}\n")
    return "".join(rows)


def prepare_wordnet(lexnames: str | Path, out_dir: str | Path, source: Path = SYSTEM_WORDNET) -> dict:
    missing = [name for name in DATABASE_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source}: WordNet 3.0 files missing ({', '.join(missing)}); install the Debian packages "
            "wordnet-base and wordnet-sense-index (the README's set-up command does)"
        )
    lines = Path(lexnames).read_text(encoding="utf-8").splitlines()
    if len(lines) != 45 or any(len(line.split("\t")) != 3 for line in lines):
        raise ValueError(f"{lexnames}: expected the 45 tab-separated lines of WordNet 3.0's lexnames table")
    with io.atomic_directory(out_dir) as root:
        tmp = Path(root) / "corpora" / "wordnet"  # nltk's data layout: <NLTK_DATA>/corpora/wordnet/
        tmp.mkdir(parents=True)
        for name in DATABASE_FILES:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_file(lines), encoding="utf-8")
        manifest = {"source": str(source), "files": {name: io.sha256_file(tmp / name) for name in [*DATABASE_FILES, "lexnames"]}}
        io.write_json(Path(root) / "manifest.json", manifest)
    return manifest
