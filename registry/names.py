"""Validation of model names and versions, the only user text that becomes a path."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from registry.errors import InvalidNameError

# Lowercase-friendly DNS-like names: no separators, no dots at the start, so a name can
# never climb out of the store ("..", "/", "\\") or hide as a dotfile.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
# A business value's name (`revenue`): the same rule, so it is safe as a Redis field, a
# Prometheus label value and a gate's name.
ValueName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
_MAX_VERSION = 10**9


def validate_model_name(name: str) -> str:
    """Return `name` if it is a safe model name, else raise `InvalidNameError`."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid model name {name!r}: use 1-63 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def parse_version(text: str | int) -> int:
    """Parse a model version (a positive integer), else raise `InvalidNameError`."""
    if isinstance(text, int):
        version = text
    elif text.isascii() and text.isdigit() and len(text) <= 10:
        version = int(text)
    else:
        raise InvalidNameError(f"invalid version {text!r}: versions are positive integers")
    if not 1 <= version <= _MAX_VERSION:
        raise InvalidNameError(f"invalid version {text!r}: versions are positive integers")
    return version
