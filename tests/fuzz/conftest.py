"""The fuzz tier's summary: what each run sent and got, printed at the end of the session
(docs/reliability.md quotes it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class FuzzRun:
    """One schemathesis run against the gateway, as read back from its reports."""

    spec: str  # which document it fuzzed
    operations: int  # operations in that document
    requests: int  # every request sent (HAR entries)
    seconds: float  # wall time of the run, generation included
    statuses: Counter[int] = field(default_factory=Counter)
    model_failures: int = 0  # documented 500s (tests/fuzz/documented.py)

    @property
    def server_errors(self) -> int:
        """5xx answers other than documented model failures: the test fails on any."""
        return sum(n for status, n in self.statuses.items() if status >= 500) - self.model_failures


RUNS = pytest.StashKey[list[FuzzRun]]()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    runs = config.stash.get(RUNS, [])
    if not runs:
        return
    terminalreporter.section("fuzz (schemathesis)")
    for run in runs:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(run.statuses.items()))
        terminalreporter.write_line(
            f"{run.spec}: {run.requests} requests to {run.operations} operations in "
            f"{run.seconds:.1f} s; 5xx on client input: {run.server_errors} (documented model "
            f"failures: {run.model_failures}); statuses {statuses}"
        )
    total = sum(run.requests for run in runs)
    seconds = sum(run.seconds for run in runs)
    terminalreporter.write_line(f"total: {total} requests in {seconds:.1f} s")
