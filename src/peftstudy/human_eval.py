"""Human evaluation (seed 000, sections 5.7.1-2): blinded rating sheets out, filled sheets in, Table 2.

Export: for every evaluated cell (dataset x model x method variant) ``examples_per_cell`` test examples
are drawn from the cell's first seed; all items are shuffled together and named by codes, so raters see
neither the method nor the grouping. Codes, draw and order are keyed by a secret made once per study
(``blinding_secret``) and kept beside the key that un-blinds the sheet, under results/: derived from the
study config alone (its name and seed, as they once were), they would let a rater with the config work out
which method wrote each output. The sheet has one empty column per criterion (1-5) and per error category
(0/1).

Ingest: each rater returns the sheet as ``<ratings_dir>/<rater>.csv``. Every value is checked (the file,
line, row and column are named on error; a rater rating an item twice, or an item not on the sheet, is an
error too), the items are un-blinded with the key, and per cell and criterion the mean
and sample sd over items (each item's score averaged over its raters) are computed, with Krippendorff's
alpha (ordinal, scores 1-5) per criterion over all items and raters, and the frequency of each error
category per dataset and method (share of item x rater judgements that flag it).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
import random
import re
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from peftstudy import io
from peftstudy.data.prepare import dataset_task

CRITERIA = ("factual_accuracy", "stylistic_consistency", "readability", "informativeness", "creativity")
ERROR_CATEGORIES = ("factual_inaccuracy", "stylistic_inconsistency", "repetition", "incompleteness", "grammar")
KEY_COLUMNS = ("item", "dataset", "model", "method", "rank", "seed", "example_id")
CELL = ("dataset", "model", "method", "rank")
DEFAULTS = {"examples_per_cell": 20, "seed": 0}


def settings(study: Mapping) -> dict:
    """The study's human_evaluation section with defaults (ratings under human_eval/<study>/ratings)."""
    merged = {**DEFAULTS, **study.get("human_evaluation", {})}
    merged.setdefault("ratings_dir", f"human_eval/{study['study']}/ratings")
    return merged


def evaluated_runs(study: Mapping, runs: Iterable) -> list[dict]:
    """The runs (Run objects of the study) whose outputs go to the raters, as the rating sheet's run identities: every
    run of the selected datasets (by default, those whose outputs are free text) and models (by default, all)."""
    chosen = settings(study)
    text_datasets = [name for name, spec in study["datasets"].items() if dataset_task(spec) == "generation"]
    selected = [run for run in runs
                if run.dataset in chosen.get("datasets", text_datasets) and run.model in chosen.get("models", [run.model])]
    return [{"dataset": run.dataset, "model": run.model, "method": run.method,
             "rank": "" if run.rank is None else str(run.rank), "seed": run.seed, "directory": run.directory}
            for run in selected]


SECRET_NAME = "blinding_secret"
SECRET_BYTES = 32
SECRET_PATTERN = re.compile(r"[0-9a-f]{%d}" % (2 * SECRET_BYTES))


class BlindingSecretError(ValueError):
    """A blinding secret that cannot be trusted to hide the methods; the message names the file."""


def secret_path(key_path: str | Path) -> Path:
    """Where a study's blinding secret lives: beside the key that un-blinds its sheet (never a Snakemake output, which
    a rerun would delete: the codes of sheets already handed out must stay valid)."""
    return Path(key_path).with_name(SECRET_NAME)


def blinding_secret(path: str | Path) -> str:
    """The study's blinding secret: read from `path`, or made once (``secrets.token_hex``) and written there, 0600,
    atomically and never over one that exists. A secret others can read, or that is malformed, is refused."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600 whatever the umask
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # in place whole or not at all; a secret made meanwhile by another job wins
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise BlindingSecretError(
            f"{path}: the blinding secret is open to other users (mode {mode:04o}, expected 0600): anyone who read it "
            f"can un-blind the rating sheet. If nobody did, `chmod 600 {path}`; otherwise delete it with the sheet "
            "and its key, and hand out the new sheet")
    secret = path.read_text(encoding="ascii", errors="replace").strip()
    check_secret(secret, path)
    return secret


def check_secret(secret: str, source: str | Path = "the blinding secret") -> None:
    """A secret is the hex of SECRET_BYTES random bytes: never a string a rater could derive (a study name, a seed)."""
    if not SECRET_PATTERN.fullmatch(secret):
        raise BlindingSecretError(
            f"{source}: a blinding secret must be {2 * SECRET_BYTES} lowercase hex digits (secrets.token_hex"
            f"({SECRET_BYTES})), got {len(secret)} characters; delete the file to have a new one made (and hand out "
            "the new sheet)")


def _keyed(secret: str, message: str) -> str:
    return hmac.new(secret.encode("ascii"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def item_code(secret: str, run_key: str, example_id: str) -> str:
    """The sheet's name for one output: an HMAC of its run and example under the secret, so it reveals neither."""
    return "i" + _keyed(secret, f"item|{run_key}|{example_id}")[:12]


def build_sheet(runs: Sequence[tuple[Mapping, str | Path]], examples_per_cell: int, seed: int, secret: str):
    """(sheet rows, key rows) from (run identity, generations.jsonl) pairs; one run per cell is used.

    The examples drawn and the sheet's order come from a generator seeded by the secret and `seed` together: from
    the (public) seed alone, a rater could redo the draw and tell each item's cell from its input."""
    check_secret(secret)
    rng = random.Random(int(_keyed(secret, f"draw|{seed}"), 16))
    chosen: dict[tuple, tuple[Mapping, str | Path]] = {}
    for run, path in sorted(runs, key=lambda item: tuple(str(item[0][k]) for k in (*CELL, "seed"))):
        chosen.setdefault(tuple(str(run[k]) for k in CELL), (run, path))  # the cell's first seed
    sheet, key, codes = [], [], set()
    for cell, (run, path) in sorted(chosen.items()):
        rows = io.read_jsonl(path)
        picked = rng.sample(rows, min(examples_per_cell, len(rows)))
        run_key = "/".join(cell) + f"/seed{run['seed']}"
        for row in picked:
            code = item_code(secret, run_key, row["id"])
            if code in codes:
                raise ValueError(f"{path}: example {row['id']!r} of {run_key} is drawn twice, or its code {code} "
                                 "names another item: example ids must be unique")
            codes.add(code)
            sheet.append({"item": code, "input": row["input"], "output": row["prediction"],
                          **dict.fromkeys(CRITERIA, ""), **dict.fromkeys(ERROR_CATEGORIES, ""), "comment": ""})
            key.append({"item": code, **{k: run[k] for k in CELL}, "seed": run["seed"], "example_id": row["id"]})
    rng.shuffle(sheet)
    return sheet, sorted(key, key=lambda r: r["item"])


SHEET_COLUMNS = ("item", "input", "output", *CRITERIA, *ERROR_CATEGORIES, "comment")


class RatingSheetError(ValueError):
    """A filled sheet that cannot be used; the message names the file, line, row and column."""


RATED_COLUMNS = ("item", *CRITERIA, *ERROR_CATEGORIES)
SCALES = {**dict.fromkeys(CRITERIA, ("1", "2", "3", "4", "5")), **dict.fromkeys(ERROR_CATEGORIES, ("0", "1"))}


def read_ratings(path: str | Path, known_items: set[str]) -> list[dict]:
    """One rater's filled sheet -> [{rater, item, criterion or error, value}], every value checked.

    Refused, naming the file, the line (``path:line``), the spreadsheet row and the column: a column missing,
    unknown (a misspelt one would otherwise be dropped) or given twice (the last would silently win); a row with
    more or fewer fields than the header; a score off its scale; an item not on the sheet (a code changed, or an
    output named by its run instead); an item rated twice. A spreadsheet's byte-order mark is read as such."""
    path = Path(path)
    rater = path.stem
    out = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None) or []
            _check_header(path, header)
            first_row: dict[str, int] = {}
            for row, fields in enumerate(reader, start=2):
                line = reader.line_num
                if not any(field.strip() for field in fields):
                    continue  # a blank line
                where = f"{path}:{line}: row {row}"
                if len(fields) != len(header):
                    raise RatingSheetError(f"{where}: {len(fields)} fields, but the header has {len(header)} columns "
                                           "(a field with a comma or a line break must be quoted)")
                values = dict(zip(header, fields))
                item = values["item"].strip()
                if item not in known_items:
                    what = "no item code" if not item else f"unknown item {item!r}"
                    raise RatingSheetError(f"{where}, column item: {what}: not on the rating sheet (not in the "
                                           "blinding key); copy the item codes from the sheet unchanged")
                if item in first_row:
                    raise RatingSheetError(f"{where}, column item: {item!r} is rated twice by {rater!r} (first in row "
                                           f"{first_row[item]}); keep one row per item")
                first_row[item] = row
                for name in (*CRITERIA, *ERROR_CATEGORIES):
                    value = values[name].strip()
                    if value == "":
                        continue
                    scale = SCALES[name]
                    if value not in scale:
                        raise RatingSheetError(f"{where}, column {name}: must be one of {', '.join(scale)} or empty, "
                                               f"got {value!r}")
                    kind = "criterion" if name in CRITERIA else "error"
                    out.append({"rater": rater, "item": item, "kind": kind, "name": name, "value": int(value)})
    except UnicodeDecodeError as error:
        raise RatingSheetError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save the sheet as "
                               "CSV UTF-8") from None
    except csv.Error as error:
        raise RatingSheetError(f"{path}: unreadable CSV: {error}") from None
    return out


def _check_header(path: Path, header: Sequence[str]) -> None:
    """The header names every rated column once, and no column the sheet does not have."""
    where = f"{path}:1: header"
    missing = [name for name in RATED_COLUMNS if name not in header]
    if missing:
        raise RatingSheetError(f"{where}: missing column(s) {', '.join(missing)} (the sheet's columns: "
                               f"{', '.join(SHEET_COLUMNS)})")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise RatingSheetError(f"{where}: column(s) {', '.join(repeated)} given more than once")
    unknown = [name for name in header if name not in SHEET_COLUMNS]
    if unknown:
        raise RatingSheetError(f"{where}: unknown column(s) {', '.join(map(repr, unknown))} (the sheet's columns: "
                               f"{', '.join(SHEET_COLUMNS)})")


def read_all_ratings(paths: Iterable[str | Path], known_items: set[str]) -> list[dict]:
    """Every rater's filled sheet, each checked (read_ratings); one sheet per rater (named by its file)."""
    seen: dict[str, Path] = {}
    ratings = []
    for path in map(Path, paths):
        if path.stem in seen:
            raise RatingSheetError(f"{path}: rater {path.stem!r} has a second sheet (also {seen[path.stem]})")
        seen[path.stem] = path
        ratings.extend(read_ratings(path, known_items))
    return ratings


def krippendorff_alpha(ratings: Iterable[Mapping], criterion: str, level: str = "ordinal") -> tuple[float, int, int]:
    """(alpha, raters, items) for one criterion over every item rated by at least one rater."""
    import krippendorff
    import numpy as np

    rows = [r for r in ratings if r["kind"] == "criterion" and r["name"] == criterion]
    raters = sorted({r["rater"] for r in rows})
    items = sorted({r["item"] for r in rows})
    if len(raters) < 2 or not items:
        return float("nan"), len(raters), len(items)
    matrix = np.full((len(raters), len(items)), np.nan)
    for r in rows:
        matrix[raters.index(r["rater"]), items.index(r["item"])] = r["value"]
    if np.count_nonzero(~np.isnan(matrix).all(axis=0) & (np.sum(~np.isnan(matrix), axis=0) >= 2)) == 0:
        return float("nan"), len(raters), len(items)  # no item has two ratings: alpha is undefined
    alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5])
    return float(alpha), len(raters), len(items)


def summarise_ratings(ratings: Sequence[Mapping], key_rows: Sequence[Mapping]) -> dict:
    """Un-blind and summarise: {'ratings': tidy rows, 'table2': per cell x criterion,
    'agreement': per criterion, 'errors': per dataset x method x category}."""
    import pandas as pd

    key = {row["item"]: row for row in key_rows}
    tidy = [{**{k: key[r["item"]][k] for k in CELL}, **r} for r in ratings]
    frame = pd.DataFrame(tidy, columns=[*CELL, "rater", "item", "kind", "name", "value"])
    criteria = frame[frame["kind"] == "criterion"]
    per_item = criteria.groupby([*CELL, "name", "item"], dropna=False)["value"].mean().reset_index()
    table2 = (per_item.groupby([*CELL, "name"], dropna=False)["value"]
              .agg(items="count", mean="mean", std=lambda s: s.std(ddof=1)).reset_index()
              .rename(columns={"name": "criterion"}))
    counts = criteria.groupby([*CELL, "name"], dropna=False)["value"].count().rename("ratings").reset_index()
    table2 = table2.merge(counts.rename(columns={"name": "criterion"}), on=[*CELL, "criterion"], how="left")
    agreement = []
    for criterion in CRITERIA:
        alpha, raters, items = krippendorff_alpha(ratings, criterion)
        agreement.append({"criterion": criterion, "krippendorff_alpha_ordinal": alpha, "raters": raters, "items": items})
    errors = frame[frame["kind"] == "error"]
    error_table = (errors.groupby(["dataset", "method", "rank", "name"], dropna=False)["value"]
                   .agg(judgements="count", frequency="mean").reset_index().rename(columns={"name": "category"}))
    return {"ratings": frame, "table2": table2, "agreement": pd.DataFrame(agreement), "errors": error_table}
