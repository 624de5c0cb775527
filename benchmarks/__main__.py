"""`python -m benchmarks <scenario> [options]`: run one scenario, print its tables, write JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import format_report, write_report
from benchmarks.scenario import BenchmarkError, available_scenarios

RESULTS = Path(__file__).parent / "results"  # git-ignored


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the scenario and its options, run it, and report; 2 when it cannot run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where JSON goes (default {RESULTS})"
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, scenario in available_scenarios():
        doc = scenario.__doc__ or name
        sub = scenarios.add_parser(
            name,
            help=doc.strip().splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        scenario.add_arguments(sub)
        sub.set_defaults(run=scenario.run)
    args = parser.parse_args(argv)
    try:
        report = args.run(args)
    except BenchmarkError as exc:
        print(f"benchmarks {args.scenario}: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    print(f"\nwritten to {write_report(report, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
