"""The paper's appendix: hyperparameters, quantization, and each run's provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from peftstudy import io
from peftstudy.data.registry import is_pinned
from peftstudy.report.latex import latex_escape
from peftstudy.study.config import unpinned_sources


def run_provenance_values(context: Mapping) -> dict:
    """What paper.tex's per-run provenance table places (nothing when there are no rows): the stages, each run's
    row and the machine and package legends, LaTeX-escaped (a legend's key is already LaTeX)."""
    rows = context.get("provenance_rows") or []
    if not rows:
        return {"provenance_rows": [], "stages": PROVENANCE_STAGES, "provenance_machines": [], "provenance_packages": []}
    return {
        "provenance_rows": [[latex_escape(cell) for cell in row] for row in rows],
        "stages": PROVENANCE_STAGES,
        "provenance_machines": [(key, latex_escape(text)) for key, text in context["provenance_machines"]],
        "provenance_packages": [(key, latex_escape(text)) for key, text in context["provenance_packages"]],
    }


def seeds_text(study: Mapping) -> str:
    """The seeds, naming the matrix blocks that use fewer or other seeds than the study's."""
    plan = study.get("adaptive_seeds")
    text = "seeds " + ", ".join(map(str, study["seeds"]))
    if plan:
        text = (f"adaptive seeds (in the order {', '.join(map(str, study['seeds']))}): every cell ran its first "
                f"{plan['min']}, then only the cells of a comparison still open got the next, up to {plan['max']}; a "
                f"comparison settled when its repeated confidence interval (Jennison and Turnbull 1989; Pocock-type "
                f"Lan-DeMets alpha spending, family-wise alpha {plan['alpha']} per dataset, model and metric, "
                f"Bonferroni within it) lay beyond its practical threshold or inside it, on "
                f"{', '.join(plan['metrics'])}" + ("; the full grid ran too, to check the design against it"
                                                   if plan["full_grid"] else ""))
    for block in study["matrix"]:
        if "seeds" in block and list(block["seeds"]) != list(study["seeds"]):
            seeds = ", ".join(map(str, block["seeds"]))
            text += f"; {', '.join(block['methods'])}: seed{'s' if len(block['seeds']) > 1 else ''} {seeds} only"
    return text


def _cells_text(cells: set, all_cells: set) -> str:
    """'all' when one setting covers every cell of the method, else the (model, dataset) cells it covers."""
    if cells == all_cells:
        return "all"
    datasets = {dataset for dataset, _ in all_cells}
    if len(datasets) == 1:
        return ", ".join(sorted(model for _, model in cells))
    return ", ".join(f"{model}/{dataset}" for dataset, model in sorted(cells))


def hyperparameter_rows(study: Mapping, settings_cells: Mapping) -> list[list]:
    """One row per distinct (method, training settings, method settings), with the cells that used it."""
    rows = []
    for method in study["methods"]:
        groups = [(settings, cells) for (name, _), (settings, cells) in settings_cells.items() if name == method]
        all_cells = set().union(*(cells for _, cells in groups)) if groups else set()
        for settings, cells in sorted(groups, key=lambda g: sorted(g[1])):
            training, spec = settings["training"], settings["method_spec"]
            extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "kind")
            ranks = study["methods"][method].get("ranks")
            if ranks:
                extra = f"ranks={ranks}" + (", " + extra if extra else "")
            rows.append([method, spec["kind"], _cells_text(cells, all_cells), f"{training['learning_rate']:g}",
                         training["epochs"], f"{training['batch_size']}x{training['gradient_accumulation_steps']}", extra])
    return rows


def quantization_rows(study: Mapping, quantized: Mapping) -> list[list]:
    rows = []
    for (model, method, rank), values in sorted(quantized.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or 0)):
        stored = sum(v[0] for v in values) / len(values)
        unquantized = sum(v[1] for v in values) / len(values)
        spec = values[0][2]
        bits = spec.get("bits", 4)
        scheme = f"{bits}-bit" + (f" {spec.get('quant_type', 'nf4').upper()}" + (", double" if spec.get("double_quant", True) else "")
                                  if bits == 4 else " LLM.int8()")
        label = method + (f" r={rank}" if rank is not None else "")
        rows.append([model, label, scheme, f"{stored / 1e6:.3f}", f"{unquantized / 1e6:.3f}",
                     f"{100 * (1 - stored / unquantized):.1f}" if unquantized else "--"])
    return rows


PROVENANCE_STAGES = ("train", "generate", "score")


def run_provenance(scored: Mapping) -> dict:
    """stage -> provenance record of one scored run (records written before per-stage provenance: train only)."""
    recorded = scored["provenance"]
    if "code_version" in recorded:  # one record, the training stage's
        return {"train": recorded}
    return {stage: recorded[stage] for stage in PROVENANCE_STAGES if recorded.get(stage)}


def capability_summary(hardware: Mapping) -> str:
    """The kernel-deciding facts of one stage's machine, in one line."""
    facts = hardware.get("capability") or {}
    parts = [hardware.get("gpu") or facts.get("cpu") or hardware.get("cpu") or "unknown CPU"]
    if facts.get("torch_cpu_capability"):
        parts.append(f"torch {facts['torch_cpu_capability']}")
    flags = [flag for flag in facts.get("cpu_flags", []) if flag.startswith(("avx512_bf16", "avx512_vnni", "amx"))]
    parts.append("+".join(flags) if flags else "no AVX512-BF16/VNNI/AMX")
    if facts.get("torch_blas"):
        parts.append(f"BLAS {facts['torch_blas']}")
    parts.append(f"{facts.get('torch_threads', hardware.get('torch_threads'))} thread(s)")
    if facts.get("environment"):
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(facts["environment"].items())))
    return ", ".join(str(part) for part in parts)


def provenance_tables(runs: Sequence[tuple[Mapping, Mapping]]) -> dict:
    """The appendix's per-run provenance: settings hash and code fingerprint of each stage, the machine each stage
    ran on (with its capability facts, numbered), and each distinct set of package versions (numbered)."""
    machines: dict[str, int] = {}
    package_sets: dict[str, int] = {}
    package_texts: dict[int, Mapping] = {}
    rows = []
    for run, stages in sorted(runs, key=lambda item: (item[0]["dataset"], item[0]["model"], item[0]["variant"],
                                                     int(item[0]["seed"]))):
        row = [run["dataset"], run["model"], run["variant"], str(run["seed"])]
        for stage in PROVENANCE_STAGES:
            record = stages.get(stage)
            if record is None:
                row += ["--", "--", "--"]
                continue
            machine = machines.setdefault(capability_summary(record.get("hardware", {})), len(machines) + 1)
            key = json.dumps(record.get("packages", {}), sort_keys=True)
            if key not in package_sets:
                package_sets[key] = len(package_sets) + 1
                package_texts[package_sets[key]] = record.get("packages", {})
            row += [(record.get("settings_hash") or "--")[:10], (record.get("code_fingerprint") or "--")[:10],
                    f"M{machine}/P{package_sets[key]}"]
        rows.append(row)
    return {
        "provenance_rows": rows,
        "provenance_machines": [[f"M{number}", text] for text, number in sorted(machines.items(), key=lambda m: m[1])],
        "provenance_packages": [[f"P{number}", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v)]
                                for number, versions in sorted(package_texts.items())],
    }


# ---------------------------------------------------------------------------- unpinned hub revisions

UNPINNED_MARK = "[unpinned]"


def hub_note(hub_id: str, revision: str | None, resolved: str | None) -> str:
    """A hub source as the report names it: a moving ref (allow_unpinned, or a registry entry with no known
    commit) is marked, with the commit the fetch resolved it to, since the ref alone does not say what ran."""
    if is_pinned(revision):
        return f"{hub_id}@{revision}"
    return f"{hub_id}@{revision} {UNPINNED_MARK} resolved to {resolved or 'a commit not recorded'}"


def base_commits(metrics_paths: Sequence[str]) -> dict[str, str]:
    """model -> the commit its hub base resolved to (base.json's resolved_revision, which the train.json beside
    each run's metrics.json copies); models whose runs record none are left out."""
    commits: dict[str, str] = {}
    for path in metrics_paths:
        record_path = Path(path).with_name("train.json")
        if not record_path.exists():
            continue
        base = io.read_json(record_path).get("base") or {}
        if base.get("model") and base.get("resolved_revision") and base["model"] not in commits:
            commits[base["model"]] = base["resolved_revision"]
    return commits


def dataset_commit(manifest: Mapping | None) -> str | None:
    """The commit a prepared hub dataset resolved to, from its data manifest (a mirror: the downloaded commit)."""
    hub = (manifest or {}).get("hub") or {}
    return hub.get("resolved_commit") or (hub.get("mirror") or {}).get("downloaded_commit")


def unpinned_notes(study: Mapping, data_manifests: Mapping[str, Mapping], commits: Mapping[str, str],
                   scorer_commits: Mapping[str, str] | None = None) -> list[str]:
    """One line per hub model, dataset or metric model the study ran at a moving ref, with what it resolved to
    (a metric model's: scorers.json's, by metrics section)."""
    lines = []
    for key, revision, _ in unpinned_sources(study):
        section, name = key.split(".")[:2]
        if section == "datasets":
            spec = study["datasets"][name]
            lines.append(f"dataset {name}: {hub_note(spec['hub_id'], revision, dataset_commit(data_manifests.get(name)))}")
        elif section == "models":
            lines.append(f"model {name}: {hub_note(study['models'][name]['hub_id'], revision, commits.get(name))}")
        else:
            model = study["metrics"][name]["model"]
            lines.append(f"metrics.{name} model: {hub_note(model, revision, (scorer_commits or {}).get(name))}")
    return lines
