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
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import msgspec
import numpy as np

from monitor.traffic import TrafficPanes
from registry.manifest import CategoricalProfile, Manifest


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
    """The ground truth of one earlier request (one label per row, or one for a single row)."""

    id: str
    label: Any


class FeedbackRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/feedback`."""

    items: list[FeedbackItem]


class FeedbackResult(msgspec.Struct, frozen=True):
    """What happened to each item: joined, unknown (never sampled) or expired."""

    accepted: int
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
) -> tuple[FeedbackResult, dict[str, list[Any]]]:
    """Score each item against what was found for its id (taken from `found`: a second label
    for one id in the same request is unknown, as one in a later request is); returns the
    result and the labels that joined."""
    joined: dict[str, list[Any]] = {}
    unknown: list[str] = []
    expired: list[str] = []
    invalid: list[str] = []
    for item in items:
        entry = found.pop(item.id, None)
        if entry is None:
            unknown.append(item.id)
        elif isinstance(entry, str):  # "expired"
            expired.append(item.id)
        elif (labels := _score(traffic, entry, item.label)) is None:
            invalid.append(item.id)
        else:
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
        """Score every item whose prediction is remembered; report the others. A label sent
        again, the same, is accepted and not counted twice (a retry)."""
        resent = {item.id for item in items if self._labels.get(item.id) == as_labels(item.label)}
        fresh = [item for item in items if item.id not in resent]
        result, joined = settle(self._traffic, fresh, self.take(item.id for item in fresh))
        self.keep_labels(joined)
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

    def keep_labels(self, labels: Mapping[str, list[Any]]) -> None:
        """Keep joined labels for exports, the oldest dropped past the capacity."""
        self._labels.update(labels)
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
