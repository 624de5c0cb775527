"""Run the `driftgate` command line and SIGKILL it at a chosen point of its work.

    python -m tests.crash 'EVENT:GLOB[#N] [EVENT:GLOB[#N] ...]' -- ARGS...

The point is a sequence of audit events (PEP 578: `open`, `os.rename` (also raised by
`os.replace`), `os.chmod`, `tempfile.mkdtemp`, ...), each with a glob on the event's first
argument, a path; `#N` waits for the Nth match. When the last step's event is raised,
after each step before it in turn, the process kills itself with SIGKILL before the
operation runs: an exact point that a timed kill from outside would hit by luck. Nothing
is patched: audit hooks only watch.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
from typing import Any

from gateway.cli import main


def arm(spec: str) -> None:
    """Install the hook that kills this process at the point `spec` describes."""
    steps = []
    for step in spec.split():
        event, _, rest = step.partition(":")
        pattern, _, count = rest.partition("#")
        steps.append((event, pattern, int(count or 1)))
    seen = [0]  # matches of the current step

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not steps or event != steps[0][0] or not args:
            return
        if fnmatch.fnmatchcase(os.fsdecode(args[0]) if _is_path(args[0]) else "", steps[0][1]):
            seen[0] += 1
            if seen[0] == steps[0][2]:
                steps.pop(0)
                seen[0] = 0
                if not steps:
                    os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


def _is_path(value: object) -> bool:
    return isinstance(value, str | bytes | os.PathLike)


if __name__ == "__main__":
    spec, separator, *arguments = sys.argv[1:]
    assert separator == "--", "usage: python -m tests.crash SPEC -- ARGS..."
    arm(spec)
    sys.exit(main(arguments))
