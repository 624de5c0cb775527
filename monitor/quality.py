"""Model quality per version: realized from label feedback, estimated before labels arrive.

Realized accuracy (classifiers) or mean absolute error (regressors) comes from the labels
joined by `monitor.feedback`. The estimate is confidence-based performance estimation: every
sampled prediction of a classifier whose manifest holds a confidence calibration adds its
calibrated chance of being right to the version's traffic panes, so the estimate merges
exactly across workers and replicas like every other count. Both cover the drift window.

The estimate assumes no concept shift (at a given confidence the model is as often right
as on the reference) and a held-out, labelled reference; its error is the sampling error
alone, and the calibration from a finite reference adds about
sqrt(acc (1 - acc) / reference rows) on top (see docs/quality.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec
import numpy as np

from monitor.business import BusinessValue, business_report, merge_values
from monitor.feedback import is_regression
from monitor.panes import PaneStore
from monitor.traffic import Outcomes, TrafficPanes, outcomes
from registry.manifest import Manifest
from registry.quality import expected_accuracy


class QualityReport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A version's quality over the window; None where there is nothing to report."""

    task: Literal["classification", "regression"]
    labelled: int  # predicted rows whose label arrived in the window
    realized_accuracy: float | None  # classification: share of labelled rows right
    realized_accuracy_error: float | None  # its binomial standard error
    realized_mae: float | None  # regression: mean absolute error of labelled rows
    realized_mae_error: float | None  # its standard error
    estimable: bool  # the version has a confidence calibration: accuracy is estimated
    estimated_rows: int  # sampled rows with an expected accuracy
    estimated_accuracy: float | None  # mean calibrated confidence: accuracy without labels
    estimated_accuracy_error: float | None  # sampling error, sqrt(sum a (1 - a)) / n
    reference_accuracy: float | None  # on the labelled reference, at registration
    reference_mae: float | None
    reference_rows: int  # labelled reference rows (0 when registered without a target)


class QualityMonitor:
    """Adds the expected accuracy of sampled predictions to the traffic panes, and reports
    each version's quality from every process's panes."""

    def __init__(self, traffic: TrafficPanes, panes: PaneStore) -> None:
        self._traffic = traffic
        self._panes = panes

    def observe(self, manifest: Manifest, outputs: Iterable[Mapping[str, np.ndarray]]) -> None:
        """Score sampled predictions (the outputs of each request) with their expected
        accuracy; nothing for a version without a confidence calibration."""
        calibration = manifest.quality.calibration if manifest.quality else None
        if calibration is None:
            return
        found = [o[calibration.probabilities] for o in outputs if calibration.probabilities in o]
        if found:
            rows = np.concatenate(found) if len(found) > 1 else found[0]
            expected = expected_accuracy(calibration, rows)
            self._traffic.record_estimates(manifest.name, manifest.version, expected)

    async def report(self, manifest: Manifest, since: float) -> QualityReport:
        """The version's quality since `since`, over the panes of every process."""
        own = self._traffic.own(manifest.name, manifest.version)
        # A key of its own: the rollout controller exchanges `traffic:` panes with a shorter
        # `since`, and an exchange deletes older panes from the shared hash.
        key = f"quality:{manifest.name}:{manifest.version}"
        return quality_report(manifest, outcomes(await self._panes.exchange(key, own, since)))

    async def business(self, manifest: Manifest, since: float) -> dict[str, BusinessValue]:
        """The version's business values (from feedback) since `since`, over the panes of
        every process."""
        own = self._traffic.values.own(manifest.name, manifest.version)
        key = f"business:{manifest.name}:{manifest.version}"  # read by this window alone
        return business_report(merge_values(await self._panes.exchange(key, own, since)))


def quality_report(manifest: Manifest, window: Outcomes) -> QualityReport:
    """A version's quality from its outcomes over a window."""
    reference = manifest.quality
    regression = reference.task == "regression" if reference else is_regression(manifest)
    return QualityReport(
        task="regression" if regression else "classification",
        labelled=window.labelled,
        realized_accuracy=None if regression else _finite(window.accuracy),
        realized_accuracy_error=None if regression else _finite(window.accuracy_error),
        realized_mae=_finite(window.mean_abs_error) if regression else None,
        realized_mae_error=_finite(window.mean_abs_error_error) if regression else None,
        estimable=reference is not None and reference.calibration is not None,
        estimated_rows=window.estimated_rows,
        estimated_accuracy=_finite(window.estimated_accuracy),
        estimated_accuracy_error=_finite(window.estimated_accuracy_error),
        reference_accuracy=reference.accuracy if reference else None,
        reference_mae=reference.mae if reference else None,
        reference_rows=reference.rows if reference else 0,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
