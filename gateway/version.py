"""The version of driftgate that is running, as installed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def driftgate_version() -> str:
    """The installed package's version; 0.0.0 when run from a tree that is not installed."""
    try:
        return version("driftgate")
    except PackageNotFoundError:
        return "0.0.0"
