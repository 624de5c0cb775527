"""Sensitive features in what leaves the gateway: dropped, or replaced by a keyed hash.

A version's manifest names its sensitive features (`manifest.sensitive`). Every export of
feature values (retraining exports, the inference log) passes its columns through
`protect_sensitive`, so one setting (`export_sensitive`, `export_hash_key`) decides for all
of them, and a hashed value is the same token wherever it appears: an HMAC-SHA256 of the
value's text under a secret key (without the key, a hash is inverted by trying every
likely value).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

Sensitive = Literal["drop", "hash"]


def protect_sensitive(
    columns: MutableMapping[str, Any], sensitive: Iterable[str], mode: Sensitive, key: str
) -> None:
    """Drop the `sensitive` columns of `columns`, or replace each value by its HMAC (in
    place); a value's text is hashed, None stays None. Names not in `columns` are skipped."""
    for name in sensitive:
        if name not in columns:
            continue
        if mode == "drop":
            del columns[name]
        else:
            columns[name] = [keyed_hash(key, value) for value in columns[name]]


def keyed_hash(key: str, value: object) -> str | None:
    """The HMAC-SHA256 (hex) of `str(value)` under `key`; None for None."""
    if value is None:
        return None
    return hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()
