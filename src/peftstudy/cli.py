"""The `peftstudy` command: one console script, one subcommand per task, each a thin front to a package module.

    peftstudy verify results/<study>

Exit status: 0 when the task succeeded (verify: nothing drifted), 1 when verify found drift, 2 on a usage error.
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
    return parser


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
