"""Agreement between a shadow version's outputs and the primary's on the same requests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgspec
import numpy as np


class AgreementSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Totals so far for one shadow version."""

    model: str
    version: int
    comparisons: int  # requests compared
    errors: int  # shadow runs that failed
    labels: int  # class labels (integer, bool, string outputs) compared
    labels_equal: int
    values: int  # scores and regression values compared
    abs_diff_sum: float
    rel_diff_sum: float

    @property
    def label_agreement(self) -> float | None:
        """Share of class labels the shadow predicted equal to the primary (None: none yet)."""
        return self.labels_equal / self.labels if self.labels else None

    @property
    def mean_abs_diff(self) -> float | None:
        """Mean absolute difference of scores and regression outputs."""
        return self.abs_diff_sum / self.values if self.values else None

    @property
    def mean_rel_diff(self) -> float | None:
        """Mean relative difference, |shadow - primary| / max(|primary|, 1e-12)."""
        return self.rel_diff_sum / self.values if self.values else None


class ShadowAgreement:
    """Running agreement per (model, shadow version); safe to update from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, int], AgreementSnapshot] = {}

    def record(
        self, model: str, version: int, primary: Sequence[np.ndarray], shadow: Sequence[np.ndarray]
    ) -> None:
        """Compare the outputs of one request, output by output."""
        labels = labels_equal = values = 0
        abs_sum = rel_sum = 0.0
        for ours, theirs in zip(primary, shadow, strict=True):
            if ours.shape != theirs.shape:  # a shadow that answers another shape disagrees
                labels += 1
                continue
            if ours.dtype.kind in "fc":
                diff = np.abs(theirs.astype(np.float64) - ours.astype(np.float64))
                values += diff.size
                abs_sum += float(diff.sum())
                rel_sum += float((diff / np.maximum(np.abs(ours), 1e-12)).sum())
            else:
                labels += ours.size
                labels_equal += int(np.count_nonzero(ours == theirs))
        self._add(
            model,
            version,
            comparisons=1,
            labels=labels,
            labels_equal=labels_equal,
            values=values,
            abs_diff_sum=abs_sum,
            rel_diff_sum=rel_sum,
        )

    def record_error(self, model: str, version: int) -> None:
        """Count a shadow run that failed."""
        self._add(model, version, errors=1)

    def snapshot(self) -> list[AgreementSnapshot]:
        """Totals of every shadow version seen so far."""
        with self._lock:
            return list(self._totals.values())

    def _add(self, model: str, version: int, **increments: float) -> None:
        with self._lock:
            current = self._totals.get((model, version)) or AgreementSnapshot(
                model=model,
                version=version,
                comparisons=0,
                errors=0,
                labels=0,
                labels_equal=0,
                values=0,
                abs_diff_sum=0.0,
                rel_diff_sum=0.0,
            )
            self._totals[(model, version)] = msgspec.structs.replace(
                current,
                **{key: getattr(current, key) + value for key, value in increments.items()},
            )
