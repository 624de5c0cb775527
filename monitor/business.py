"""Business values per version: what feedback says each version's calls earned or cost.

A feedback item may carry named numbers for the call it answers (`{"revenue": 12.5}`). Each
joins the version that served the call, as a label does, and is counted in that version's
value panes as a count, a sum and a sum of squares: enough for the mean and the variance
over any window, and, like every other pane, they add across workers and replicas (merged
sums go through `math.fsum`, so the order processes are read in never changes a figure).

Names are bounded, since each becomes a Prometheus label value and a Redis pane field: by
the `business_values` setting when it lists them, else at `MAX_VALUE_NAMES` per process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Collection, Iterable, Mapping

import msgspec

MAX_VALUES_PER_ITEM = 16  # names one feedback item may carry
MAX_VALUE_NAMES = 64  # distinct names a process accepts without an allow-list; reports show
# at most this many (alphabetically first), whatever other replicas accepted
_ENCODE = msgspec.msgpack.Encoder()
_PANE = msgspec.msgpack.Decoder(dict[str, tuple[float, float, float]])


class ValueStats(msgspec.Struct, frozen=True):
    """One value of one version over a window: how many calls have it, its sum and the sum
    of its squares."""

    count: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        """Mean per call that has the value (NaN without any)."""
        return self.total / self.count if self.count else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 in the denominator; NaN under two calls)."""
        if self.count < 2:
            return math.nan
        # Clamped: with a spread tiny against the mean, rounding can take it below zero.
        return max(self.squares - self.total * self.total / self.count, 0.0) / (self.count - 1)


class BusinessValue(msgspec.Struct, frozen=True, kw_only=True):
    """A value of a version over the drift window (`business` in the drift report)."""

    count: int  # calls whose feedback carried it
    sum: float
    mean: float | None
    variance: float | None  # sample variance, None under two calls
    standard_error: float | None  # of the mean: sqrt(variance / count)


class ValueNameError(ValueError):
    """A value name the gateway does not accept (not allowed, or one too many)."""


class ValuePanes:
    """The value panes of every version this process saw feedback for; O(names) per item.

    Only touched from the event loop (feedback, evaluations): no lock needed.
    """

    def __init__(self, *, pane_seconds: float, max_panes: int) -> None:
        self.pane_seconds = pane_seconds
        self._max_panes = max_panes
        self._panes: dict[tuple[str, int], dict[int, dict[str, list[float]]]] = {}
        self._names: set[str] = set()  # accepted so far (without an allow-list)

    def admit(self, names: Iterable[str], allowed: Collection[str]) -> None:
        """Accept a request's value names, all or none.

        Raises:
            ValueNameError: a name outside `allowed` (when it lists any), or, without it,
                one new name too many for `MAX_VALUE_NAMES`.
        """
        wanted = set(names)
        if allowed:
            if refused := sorted(wanted.difference(allowed)):
                raise ValueNameError(
                    f"unknown business value {', '.join(map(repr, refused))}: the gateway "
                    f"accepts {', '.join(map(repr, sorted(allowed)))} (setting business_values)"
                )
            return
        new = wanted - self._names
        if len(self._names) + len(new) > MAX_VALUE_NAMES:
            raise ValueNameError(
                f"too many distinct business value names (at most {MAX_VALUE_NAMES}): list "
                "the ones to keep in the setting business_values"
            )
        self._names |= new

    def record(self, model: str, version: int, values: Mapping[str, float]) -> None:
        """Count one call's values."""
        pane = self._pane(model, version)
        for name, value in values.items():
            sums = pane.get(name)
            if sums is None:
                sums = pane[name] = [0.0, 0.0, 0.0]
            sums[0] += 1
            sums[1] += value
            sums[2] += value * value

    def own(self, model: str, version: int) -> dict[float, bytes]:
        """This process's panes of a version, by start, as bytes for a `PaneStore`."""
        panes = self._panes.get((model, version), {})
        return {number * self.pane_seconds: _ENCODE.encode(pane) for number, pane in panes.items()}

    def _pane(self, model: str, version: int) -> dict[str, list[float]]:
        number = int(time.time() // self.pane_seconds)
        panes = self._panes.setdefault((model, version), {})
        pane = panes.get(number)
        if pane is None:
            pane = panes[number] = {}
            for old in sorted(panes)[: -self._max_panes]:
                del panes[old]
        return pane


def merge_values(panes: Iterable[bytes]) -> dict[str, ValueStats]:
    """Every value's figures over panes (from every process), by name."""
    parts: dict[str, list[tuple[float, float, float]]] = {}
    for pane in panes:
        with contextlib.suppress(msgspec.DecodeError):  # damaged: left out, not fatal
            for name, sums in _PANE.decode(pane).items():
                parts.setdefault(name, []).append(sums)
    return {
        name: ValueStats(
            count=round(math.fsum(s[0] for s in sums)),
            total=math.fsum(s[1] for s in sums),
            squares=math.fsum(s[2] for s in sums),
        )
        for name, sums in sorted(parts.items())
    }


def business_report(stats: Mapping[str, ValueStats]) -> dict[str, BusinessValue]:
    """The drift report's `business`: at most `MAX_VALUE_NAMES` values, by name."""
    return {
        name: BusinessValue(
            count=value.count,
            sum=value.total,
            mean=_finite(value.mean),
            variance=_finite(value.variance),
            standard_error=_finite(math.sqrt(value.variance / value.count))
            if value.count
            else None,
        )
        for name, value in sorted(stats.items())[:MAX_VALUE_NAMES]
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
