"""Label feedback: ground truth that arrives after the prediction, joined by request id.

Sampled predictions are remembered per request id (bounded, with an age limit). A label
for a remembered id scores that version's prediction (accuracy for classifiers, absolute
error for regressors) into its outcome panes; an id never sampled, or one too old, is
reported back to the caller, never silently dropped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

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
    """A sampled prediction waiting for its label."""

    model: str
    version: int
    predictions: tuple[Any, ...]  # one per row of the request
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


class PredictionLog:
    """Sampled predictions by request id, oldest evicted first."""

    def __init__(
        self, traffic: TrafficPanes, *, capacity: int = 100_000, max_age_seconds: float = 3600.0
    ) -> None:
        self._traffic = traffic
        self._capacity = capacity
        self._max_age = max_age_seconds
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self._expired: OrderedDict[str, None] = OrderedDict()  # recently forgotten ids
        self.labels: OrderedDict[str, list[Any]] = OrderedDict()  # joined ground truth

    def remember(
        self, request_id: str, manifest: Manifest, outputs: Mapping[str, np.ndarray]
    ) -> None:
        """Keep a sampled request's prediction until its label arrives."""
        values = outputs.get(prediction_output(manifest))
        if values is None:
            return
        self._entries[request_id] = Remembered(
            model=manifest.name,
            version=manifest.version,
            at=time.time(),
            predictions=tuple(values.reshape(values.shape[0], -1)[:, 0].tolist()),
            regression=is_regression(manifest),
        )
        self._entries.move_to_end(request_id)
        while len(self._entries) > self._capacity:
            self._forget(next(iter(self._entries)))

    def join(self, items: list[FeedbackItem]) -> FeedbackResult:
        """Score every item whose prediction is remembered; report the others."""
        self._expire(time.time())
        accepted = 0
        unknown: list[str] = []
        expired: list[str] = []
        invalid: list[str] = []
        for item in items:
            entry = self._entries.pop(item.id, None)
            if entry is None:
                (expired if item.id in self._expired else unknown).append(item.id)
                continue
            labels = item.label if isinstance(item.label, list) else [item.label]
            if len(labels) != len(entry.predictions):
                invalid.append(item.id)
                continue
            try:
                for label, predicted in zip(labels, entry.predictions, strict=True):
                    if entry.regression:
                        error = abs(float(label) - float(predicted))
                        self._traffic.record_label(entry.model, entry.version, False, error)
                    else:
                        correct = str(label) == str(predicted)
                        self._traffic.record_label(entry.model, entry.version, correct, 0.0)
            except (TypeError, ValueError):
                invalid.append(item.id)
                continue
            accepted += 1
            self.labels[item.id] = labels
            while len(self.labels) > self._capacity:
                self.labels.popitem(last=False)
        return FeedbackResult(accepted=accepted, unknown=unknown, expired=expired, invalid=invalid)

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
