"""The shape every scenario module has, and how `python -m benchmarks` finds them.

A scenario is a module `benchmarks/<name>.py` (`-` in a name is `_` in its module) that
provides two functions (the module itself satisfies `Scenario`):

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> Report: ...

`run` measures, compares against the scenario's limit and peer in the same run, and returns
a `Report`; the entry point prints it and writes its JSON, so no scenario formats or saves
anything itself. Scenario modules import heavy dependencies inside `run`, so listing the
scenarios (`--help`) stays fast. The module's docstring is its help text.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Protocol, cast

from benchmarks.report import Report

SCENARIOS = ("http", "grpc", "drift", "drift-quality", "inference-log", "workers")
"""Scenario names, in the order `make bench` runs them; one module each."""


class BenchmarkError(Exception):
    """A benchmark cannot run or its measurement is invalid; the message says what to do."""


class Scenario(Protocol):
    """A scenario module."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the scenario's own options to its sub-command."""
        ...

    def run(self, args: argparse.Namespace) -> Report:
        """Run the scenario with the parsed options and return its report."""
        ...


def available_scenarios() -> Iterator[tuple[str, Scenario]]:
    """The scenarios whose module exists (one may not be written yet), by name."""
    for name in SCENARIOS:
        module_name = f"{__package__}.{name.replace('-', '_')}"
        try:
            module: ModuleType = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        yield name, cast(Scenario, module)
