"""The claim spec: what a claim and its checks declare, validated when the study is loaded (claims/ evaluates them)."""

from __future__ import annotations

import math
from typing import Any, Mapping

TWO_CELL_KINDS = ("ratio", "difference", "relative_change")


NUMERIC_KINDS = TWO_CELL_KINDS + ("value",)


RANK_KINDS = ("best_rank", "knee_rank")


KINDS = NUMERIC_KINDS + RANK_KINDS + ("ordering",)


def rank_text(rank: Any) -> str:
    """A rank as metrics.csv keys it: '' for rank-less methods, else the integer as text."""
    if rank is None or rank == "" or (isinstance(rank, float) and math.isnan(rank)):
        return ""
    return str(int(float(rank)))


def _cell(spec: Mapping, check: Mapping) -> dict:
    return {"dataset": spec.get("dataset", check.get("dataset")), "model": spec.get("model", check.get("model")),
            "method": spec["method"], "rank": rank_text(spec.get("rank"))}


def check_cells(check: Mapping) -> list[dict]:
    """The cells a check reads, dataset and model defaulting to the check's (rank kinds: none)."""
    kind = check["kind"]
    if kind in TWO_CELL_KINDS:
        return [_cell(check["a"], check), _cell(check["b"], check)]
    if kind == "value":
        return [_cell(check["a"], check)]
    if kind == "ordering":
        return [_cell(spec, check) for spec in check["cells"]]
    return []


def expected_interval(check: Mapping) -> tuple[float, float]:
    """The claimed interval, a bound being a half-line."""
    if "expected" in check:
        low, high = check["expected"]
        return float(low), float(high)
    if "at_least" in check or "at_most" in check:
        return float(check.get("at_least", -math.inf)), float(check.get("at_most", math.inf))
    raise ValueError(f"a {check['kind']} check needs expected, at_least or at_most")


def validate_claims(study: Mapping) -> None:
    """What the schema cannot say: unique ids, every cell with a dataset and a model, a rank for ranked
    methods of the study (and none for rank-less ones), expected intervals with low <= high."""
    seen = set()
    for index, claim in enumerate(study.get("claims", [])):
        where = f"claims[{index}] ({claim.get('id')})"
        if claim["id"] in seen:
            raise ValueError(f"{where}: duplicate claim id {claim['id']!r}")
        seen.add(claim["id"])
        for position, check in enumerate(claim["checks"]):
            here = f"{where}.checks[{position}]"
            if check["kind"] not in KINDS:
                raise ValueError(f"{here}: unknown check kind {check['kind']!r} (kinds: {', '.join(KINDS)})")
            if check["kind"] in RANK_KINDS:
                for key in ("dataset", "model", "metric", "ranks"):
                    if key not in check:
                        raise ValueError(f"{here}: a {check['kind']} check names its {key}")
                continue
            if check["kind"] in NUMERIC_KINDS:
                low, high = expected_interval(check)
                if low > high:
                    raise ValueError(f"{here}: expected interval [{low}, {high}] has low > high")
            cells = check_cells(check)
            for cell in cells:
                for axis in ("dataset", "model"):
                    if cell[axis] is None:
                        raise ValueError(f"{here}: cell {cell['method']} has no {axis} (give it in the cell or the check)")
                method = study.get("methods", {}).get(cell["method"])
                if method is not None and method.get("ranks") and cell["rank"] == "":
                    raise ValueError(f"{here}: method {cell['method']!r} is swept over ranks"
                                     f" {method['ranks']}; name the rank")
            if len({tuple(c.values()) for c in cells}) < len(cells):
                raise ValueError(f"{here}: the same cell appears twice")
