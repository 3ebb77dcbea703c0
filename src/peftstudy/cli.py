"""The `peftstudy` command: one console script, one subcommand per task, each a thin front to a package module.

    peftstudy verify results/<study>
    peftstudy export results/<study>/runs/<dataset>/<model>/<variant>/seed<n> OUT_DIR
    peftstudy matrix config/<study>.yaml
    peftstudy integrity results/<study>/metrics.csv   (or a published table in the same columns)

Exit status: 0 when the task succeeded (verify: nothing drifted; integrity: no finding), 1 when verify found drift
or integrity a finding, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Where the Snakefile's rules keep their scripts, from the checkout's root (the directory that holds results/).
DEFAULT_SCRIPTS = Path("workflow/scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peftstudy", description="Tasks on a peftstudy checkout and its results.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify", help="re-check a study's artifacts against their recorded provenance",
        description="Re-check every run and baseline artifact of results/<study> against what was recorded when it "
                    "was written: each JSON record's checksum of its own content, the weights' and generations' "
                    "checksums, each stage's settings hash, its code fingerprint (against the workflow scripts now) "
                    "and its package versions (against this environment). Prints one line per drift (artifact, what "
                    "drifted, recorded vs now) and a summary; exits 1 on any drift, 0 when all are clean.")
    verify.add_argument("results", type=Path, help="the study's results directory, results/<study>")
    verify.add_argument("--scripts", type=Path, default=DEFAULT_SCRIPTS,
                        help="the workflow scripts whose code fingerprints are compared (default: %(default)s, "
                             "from the checkout's root)")
    verify.set_defaults(handler=_verify)
    export = commands.add_parser(
        "export", help="copy one run's weights as a directory that loads with plain peft and transformers",
        description="Copy RUN_DIR/weights (adapter or model, tokenizer, model card README.md) to OUT_DIR, with the "
                    "run's decoding settings (RUN_DIR/generation_config.json, the generate job's) and, when the study built "
                    "the base itself, the base's directory as OUT_DIR/base, so that OUT_DIR loads anywhere without "
                    "peftstudy (the model card names the methods that still need it). Refuses an OUT_DIR that "
                    "exists and is not empty.")
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a trained and generated run, results/<study>/runs/<dataset>/<model>/<variant>/seed<n>")
    export.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="where to write (new or empty)")
    export.set_defaults(handler=_export)
    matrix = commands.add_parser(
        "matrix", help="list a study's cells and runs, and how far each run got",
        description="List every run of the study CONFIG (its cells: dataset x model x method variant, each with "
                    "its seeds), one line per run: done (train.json and metrics.json present), failed (a job of "
                    "the run left logs/<study>/<stage>/...failure.json), resumable (a training checkpoint under "
                    "checkpoints/<study>/...) or missing; then a summary count line.")
    matrix.add_argument("config", type=Path, metavar="CONFIG", help="the study's config file, config/<study>.yaml")
    matrix.add_argument("--root", type=Path, default=Path("."),
                        help="the checkout's root, which holds results/, logs/ and checkpoints/ (default: %(default)s)")
    matrix.set_defaults(handler=_matrix)
    integrity = commands.add_parser(
        "integrity", help="check a results table for copies, impossible values and contradictions",
        description="Run the integrity checks on TABLE, a tidy table of metrics: a study's results/<study>/metrics.csv "
                    "or a published table encoded in the same columns (dataset, model, method, rank, seed, metric, "
                    "value; rank and seed may be empty). Checks: "
                    + "; ".join(f"{name}: {what}" for name, what in _integrity_checks().items())
                    + ". (The checks that need the runs' artifacts, copied outputs and parameter formulas, run in "
                    "the workflow's integrity_table rule.) Prints one line per finding and a summary; exits 1 on "
                    "any finding.")
    integrity.add_argument("table", type=Path, metavar="TABLE", help="the CSV table to check")
    integrity.set_defaults(handler=_integrity)
    return parser


def _integrity_checks() -> dict:
    from peftstudy.stats.integrity import CHECKS

    return CHECKS


def _integrity(args: argparse.Namespace) -> int:
    import pandas as pd

    from peftstudy.stats.integrity import check_table

    try:
        findings = check_table(pd.read_csv(args.table, dtype=str, keep_default_na=False))
    except (OSError, ValueError, pd.errors.ParserError) as error:
        print(f"peftstudy integrity: {args.table}: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(f"{finding.check}: {finding.where}: {finding.detail}")
    counts = {check: sum(f.check == check for f in findings) for check in _integrity_checks()}
    print(f"{args.table}: {len(findings)} findings"
          + (" (" + ", ".join(f"{check} {n}" for check, n in counts.items() if n) + ")" if findings else
             f", {len(counts)} checks passed"))
    return 1 if findings else 0


def _export(args: argparse.Namespace) -> int:
    from peftstudy.export import ExportError, export

    try:
        out_dir = export(args.run_dir, args.out_dir)
    except (ExportError, FileNotFoundError) as error:
        print(f"peftstudy export: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.run_dir} to {out_dir}")
    return 0


STAGES_WITH_LOGS = ("train", "generate", "score")  # a run's jobs: logs/<study>/<stage>/<dataset>/<model>/<variant>/


def run_status(run, root: Path) -> str:
    """done, failed, resumable or missing: what the workflow left for this run under ``root``."""
    from peftstudy.execution.jobs import failure_path
    from peftstudy.training.checkpoint import CHECKPOINT_FILE

    directory = root / run.directory
    if (directory / "train.json").is_file() and (directory / "metrics.json").is_file():
        return "done"
    cell = f"{run.dataset}/{run.model}/{run.variant}/seed{run.seed}"
    if any(failure_path(root / "logs" / run.study / stage / f"{cell}.log").is_file() for stage in STAGES_WITH_LOGS):
        return "failed"
    if (root / "checkpoints" / run.study / cell / CHECKPOINT_FILE).is_file():
        return "resumable"
    return "missing"


def _matrix(args: argparse.Namespace) -> int:
    from peftstudy.study.config import StudyConfigError, load_study
    from peftstudy.study.matrix import expand_runs

    try:
        study = load_study(args.config)
    except (StudyConfigError, OSError) as error:
        print(f"peftstudy matrix: {error}", file=sys.stderr)
        return 2
    runs = expand_runs(study)
    counts = {status: 0 for status in ("done", "resumable", "failed", "missing")}
    cells = sorted({(run.dataset, run.model, run.variant) for run in runs})
    for cell in cells:
        print(f"{'/'.join(cell)}:")
        for run in (run for run in runs if (run.dataset, run.model, run.variant) == cell):
            status = run_status(run, args.root)
            counts[status] += 1
            print(f"  seed{run.seed:<6} {status:<10} {run.directory}")
    print(f"{study['study']}: {len(cells)} cells, {len(runs)} runs: "
          + ", ".join(f"{count} {status}" for status, count in counts.items()))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from peftstudy.verify import VerifyError, verify

    try:
        report = verify(args.results, args.scripts)
    except VerifyError as error:
        print(f"peftstudy verify: {error}", file=sys.stderr)
        return 2
    for drift in report.drifts:
        print(drift.line())
    print(report.summary())
    return 0 if report.clean else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
