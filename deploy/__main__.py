"""`python -m deploy [--check]`: write (or check) the manifests made from `monitor/`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from deploy.generate import ROOT, stale, write


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated manifests; with `--check`, only list the stale ones (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a generated file is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for path in outdated:
            print(f"stale: {path.relative_to(ROOT)} (run `python -m deploy`)")
        return 1 if outdated else 0
    for path in write():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
