"""Label feedback: ground truth that arrives after the prediction, joined by request id.

Sampled predictions are remembered per request id (bounded, with an age limit) in a
`PredictionLog`. A label for a remembered id scores that version's prediction (accuracy for
classifiers, absolute error for regressors) into the outcome panes of the process that
received the label; panes merge exactly across processes, so where a label is scored does
not matter. An id never sampled, or one too old, is reported back to the caller, never
silently dropped.

Two logs: `LocalPredictionLog` keeps this process's predictions (the embedded default);
`monitor.feedback_redis.RedisPredictionLog` shares every replica's through Redis, so a label
joins wherever it arrives.

An item may also carry business values for the call (`{"revenue": 12.5}`), with a label or
without one: they join the same way, once, and count in the version's value panes
(`monitor.business`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol

import msgspec
import numpy as np

from monitor.business import MAX_VALUES_PER_ITEM
from monitor.traffic import TrafficPanes
from registry.manifest import CategoricalProfile, Manifest
from registry.names import ValueName

Values = Annotated[
    dict[ValueName, float], msgspec.Meta(min_length=1, max_length=MAX_VALUES_PER_ITEM)
]
_ENCODE = msgspec.json.Encoder()
_ENCODE_SORTED = msgspec.json.Encoder(order="deterministic")  # a retry's payload is the same
_WITH_VALUES = b"values:"  # heads the payload of an item with values: no JSON text starts so


def is_regression(manifest: Manifest) -> bool:
    """A model without a categorical (class label) output is scored by absolute error."""
    return not any(isinstance(p, CategoricalProfile) for p in manifest.profile.outputs)


def prediction_output(manifest: Manifest) -> str:
    """The output a label is compared with: the class label, else the first output."""
    for profile in manifest.profile.outputs:
        if isinstance(profile, CategoricalProfile):
            return profile.name
    return manifest.signature.outputs[0].name


class Remembered(msgspec.Struct, frozen=True):
    """A sampled prediction waiting for its label (stored as JSON by the Redis log)."""

    model: str
    version: int
    predictions: tuple[Any, ...]  # one per row of the request, as JSON-safe values
    regression: bool
    at: float


class FeedbackItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What became of one earlier request: its ground truth (one label per row, or one for
    a single row), business values for the call as a whole, or both."""

    id: str
    label: Any = msgspec.UNSET
    values: Values | None = None

    def __post_init__(self) -> None:
        # Raised while decoding a request, these become its 400.
        if self.label is msgspec.UNSET and self.values is None:
            raise ValueError("a feedback item needs a label, values, or both")
        if self.values is not None and not all(map(math.isfinite, self.values.values())):
            raise ValueError("business values must be finite numbers")


class _Outcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """An item's label and values, as a claim in the shared log keeps them."""

    label: Any = msgspec.UNSET
    values: dict[str, float] | None = None


def outcome_payload(item: FeedbackItem) -> bytes:
    """What a log keeps of an item to recognise it sent again: its label's JSON (as before
    items had values), or `values:` and its label and values as JSON, keys sorted."""
    if item.values is None:
        return _ENCODE.encode(item.label)
    return _WITH_VALUES + _ENCODE_SORTED.encode(_Outcome(label=item.label, values=item.values))


def item_of(request_id: str, payload: bytes) -> FeedbackItem:
    """The item `outcome_payload` made `payload` from.

    Raises:
        msgspec.DecodeError: a damaged payload.
    """
    if payload.startswith(_WITH_VALUES):
        outcome = msgspec.json.decode(payload[len(_WITH_VALUES) :], type=_Outcome)
        return FeedbackItem(request_id, outcome.label, outcome.values)
    return FeedbackItem(request_id, msgspec.json.decode(payload))


class FeedbackRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/feedback`."""

    items: list[FeedbackItem]


class FeedbackResult(msgspec.Struct, frozen=True):
    """What happened to each item: joined, unknown (never sampled) or expired."""

    accepted: int  # joined: labels scored, values counted
    unknown: list[str]
    expired: list[str]
    invalid: list[str]  # a label that does not fit the prediction (row count, type)


class PredictionLogUnavailableError(Exception):
    """The shared log cannot be read now; nothing was joined, the labels may be sent again."""


# What a log found for a request id: its prediction (now taken: it joins once), or the
# news that it was forgotten (too old, or pushed out by newer ones).
Found = Remembered | Literal["expired"]


class PredictionLog(Protocol):
    """Sampled predictions waiting for their labels, by request id."""

    def remember(
        self, request_id: str, manifest: Manifest, outputs: Mapping[str, np.ndarray]
    ) -> None:
        """Keep a sampled request's prediction until its label arrives; never blocks."""
        ...

    async def join(self, items: list[FeedbackItem]) -> FeedbackResult:
        """Score every item whose prediction is remembered; report the others.

        Raises:
            PredictionLogUnavailableError: the shared log is unreachable (nothing joined).
        """
        ...

    async def labels(self, request_ids: Iterable[str]) -> dict[str, list[Any]]:
        """The joined labels of those requests that have one (for retraining exports)."""
        ...

    async def start(self) -> None:
        """Start background work (inside the running loop)."""
        ...

    async def close(self) -> None:
        """Stop background work and release connections."""
        ...


def remembered(manifest: Manifest, outputs: Mapping[str, np.ndarray]) -> Remembered | None:
    """What is kept of a sampled prediction: the compared output's first column per row."""
    values = outputs.get(prediction_output(manifest))
    if values is None:
        return None
    return Remembered(
        model=manifest.name,
        version=manifest.version,
        at=time.time(),
        predictions=tuple(values.reshape(values.shape[0], -1)[:, 0].tolist()),
        regression=is_regression(manifest),
    )


def settle(
    traffic: TrafficPanes, items: Sequence[FeedbackItem], found: dict[str, Found]
) -> tuple[FeedbackResult, dict[str, list[Any] | None]]:
    """Score each item against what was found for its id (taken from `found`: a second label
    for one id in the same request is unknown, as one in a later request is); returns the
    result and the items that joined, with their labels (None: values alone)."""
    joined: dict[str, list[Any] | None] = {}
    unknown: list[str] = []
    expired: list[str] = []
    invalid: list[str] = []
    for item in items:
        entry = found.pop(item.id, None)
        if entry is None:
            unknown.append(item.id)
        elif isinstance(entry, str):  # "expired"
            expired.append(item.id)
        elif item.label is msgspec.UNSET:
            _count_values(traffic, entry, item)
            joined[item.id] = None
        elif (labels := _score(traffic, entry, item.label)) is None:
            invalid.append(item.id)  # its values too: an item counts whole or not at all
        else:
            _count_values(traffic, entry, item)
            joined[item.id] = labels
    result = FeedbackResult(accepted=len(joined), unknown=unknown, expired=expired, invalid=invalid)
    return result, joined


def accept_resent(result: FeedbackResult, resent: Collection[str]) -> FeedbackResult:
    """`result` with the labels sent again (found joined with the same label) accepted: a
    client that never got the answer to its first request loses nothing by retrying."""
    if not resent:
        return result
    return msgspec.structs.replace(
        result,
        accepted=result.accepted + len(resent),
        unknown=[key for key in result.unknown if key not in resent],
    )


def as_labels(label: Any) -> list[Any]:
    """A label as stored: one per row."""
    return label if isinstance(label, list) else [label]


def _count_values(traffic: TrafficPanes, entry: Remembered, item: FeedbackItem) -> None:
    if item.values:
        traffic.values.record(entry.model, entry.version, item.values)


def _score(traffic: TrafficPanes, entry: Remembered, label: Any) -> list[Any] | None:
    """Count a label against its prediction; None (nothing counted) if it does not fit."""
    labels = as_labels(label)
    if len(labels) != len(entry.predictions):
        return None
    try:
        # Every row is scored before any is counted: a bad row leaves no partial count.
        outcomes = [
            (False, abs(float(truth) - float(predicted)))
            if entry.regression
            else (str(truth) == str(predicted), 0.0)
            for truth, predicted in zip(labels, entry.predictions, strict=True)
        ]
    except (TypeError, ValueError):
        return None
    for correct, error in outcomes:
        traffic.record_label(entry.model, entry.version, correct, error)
    return labels


class LocalPredictionLog:
    """This process's sampled predictions by request id, oldest evicted first."""

    def __init__(
        self, traffic: TrafficPanes, *, capacity: int = 100_000, max_age_seconds: float = 3600.0
    ) -> None:
        self._traffic = traffic
        self._capacity = capacity
        self._max_age = max_age_seconds
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self._expired: OrderedDict[str, None] = OrderedDict()  # recently forgotten ids
        self._labels: OrderedDict[str, list[Any]] = OrderedDict()  # joined ground truth
        self._joined: OrderedDict[str, bytes] = OrderedDict()  # outcome payloads, for retries

    def remember(
        self, request_id: str, manifest: Manifest, outputs: Mapping[str, np.ndarray]
    ) -> None:
        """Keep a sampled request's prediction until its label arrives."""
        entry = remembered(manifest, outputs)
        if entry is not None:
            self.keep(request_id, entry)

    def keep(self, request_id: str, entry: Remembered) -> None:
        """Keep an entry made by `remembered`."""
        self._entries[request_id] = entry
        self._entries.move_to_end(request_id)
        while len(self._entries) > self._capacity:
            self._forget(next(iter(self._entries)))

    async def join(self, items: list[FeedbackItem]) -> FeedbackResult:
        """Score every item whose prediction is remembered; report the others. An item sent
        again, the same, is accepted and not counted twice (a retry)."""
        resent = {item.id for item in items if self._joined.get(item.id) == outcome_payload(item)}
        fresh = [item for item in items if item.id not in resent]
        result, joined = settle(self._traffic, fresh, self.take(item.id for item in fresh))
        self.keep_labels(joined)
        by_id = {item.id: item for item in reversed(fresh)}  # the first of an id joined
        self._joined.update((key, outcome_payload(by_id[key])) for key in joined)
        while len(self._joined) > self._capacity:
            self._joined.popitem(last=False)
        return accept_resent(result, resent)

    def take(self, request_ids: Iterable[str]) -> dict[str, Found]:
        """Remove and return the entries of those ids; "expired" for recently forgotten ids."""
        self._expire(time.time())
        found: dict[str, Found] = {}
        for request_id in request_ids:
            entry = self._entries.pop(request_id, None)
            if entry is not None:
                found[request_id] = entry
            elif request_id in self._expired:
                found[request_id] = "expired"
        return found

    def discard(self, request_ids: Iterable[str]) -> None:
        """Drop entries joined elsewhere, quietly: a later label for them is unknown."""
        for request_id in request_ids:
            self._entries.pop(request_id, None)

    def keep_labels(self, labels: Mapping[str, list[Any] | None]) -> None:
        """Keep joined labels for exports (None: values alone, nothing to keep), the oldest
        dropped past the capacity."""
        self._labels.update((key, value) for key, value in labels.items() if value is not None)
        while len(self._labels) > self._capacity:
            self._labels.popitem(last=False)

    async def labels(self, request_ids: Iterable[str]) -> dict[str, list[Any]]:
        """The labels joined in this process for those requests."""
        return {key: self._labels[key] for key in request_ids if key in self._labels}

    async def start(self) -> None:
        """Nothing runs in the background."""

    async def close(self) -> None:
        """Nothing to release."""

    def _expire(self, now: float) -> None:
        while self._entries:
            request_id, entry = next(iter(self._entries.items()))
            if now - entry.at <= self._max_age:
                break
            self._forget(request_id)

    def _forget(self, request_id: str) -> None:
        del self._entries[request_id]
        self._expired[request_id] = None
        while len(self._expired) > self._capacity:
            self._expired.popitem(last=False)
