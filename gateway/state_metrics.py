"""Gauges read at scrape time from the live state: traffic weights, shadow agreement and
queue, state backend health, drift and model quality. Reading them when Prometheus asks
means no bookkeeping on the request path and never a stale value."""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.deployments import DeploymentManager
from gateway.repository import ModelRepository
from gateway.routing import Router
from gateway.shadows import ShadowMirror
from monitor.drift import DriftMonitor

STATUS_CODES = {"ok": 0.0, "warn": 1.0, "drift": 2.0, "insufficient_data": -1.0}
DRIFT_STATISTICS = (
    "ks",
    "psi",
    "js",
    "hellinger",
    "wasserstein",
    "mean_shift",
    "chi_square",
    "missing_rate",
    "out_of_range_rate",
    "unseen_rate",
)


class StateCollector(Collector):
    """Collects the state gauges of one gateway process."""

    def __init__(
        self,
        router: Router,
        manager: DeploymentManager,
        mirror: ShadowMirror,
        monitor: DriftMonitor,
        repository: ModelRepository,
    ) -> None:
        self._router = router
        self._repository = repository
        self._manager = manager
        self._mirror = mirror
        self._monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Build every family from the state as it is now."""
        weight = GaugeMetricFamily(
            "driftgate_traffic_weight_percent",
            "Percent of routed calls (stable, canary) or mirrored (shadow) per version.",
            labels=["model", "version", "role"],
        )
        for model, policy in self._router.policies().items():
            deployment = policy.deployment
            canary = deployment.canary.weight if deployment.canary else 0.0
            weight.add_metric([model, str(deployment.stable), "stable"], 100.0 - canary)
            if deployment.canary is not None:
                weight.add_metric([model, str(deployment.canary.version), "canary"], canary)
            for shadow in deployment.shadows:
                weight.add_metric([model, str(shadow.version), "shadow"], shadow.percent)
        yield weight

        broken = GaugeMetricFamily(
            "driftgate_model_version_broken",
            "1 for a version that cannot be served (damaged or missing files, or a deployment "
            "naming a version that does not exist); its calls answer 503.",
            labels=["model", "version"],
        )
        for failure in self._repository.failures():
            broken.add_metric([failure.model, str(failure.version)], 1.0)
        yield broken

        up = GaugeMetricFamily(
            "driftgate_state_backend_up",
            "1 when the control-state backend is reachable.",
            labels=["backend"],
        )
        up.add_metric([self._manager.state.kind], 1.0 if self._manager.state.healthy else 0.0)
        yield up

        yield GaugeMetricFamily(
            "driftgate_shadow_queue_depth",
            "Shadow copies waiting to run.",
            value=self._mirror.depth,
        )
        agreement = GaugeMetricFamily(
            "driftgate_shadow_label_agreement_ratio",
            "Share of class labels a shadow predicted equal to the primary.",
            labels=["model", "version"],
        )
        difference = GaugeMetricFamily(
            "driftgate_shadow_mean_abs_difference",
            "Mean absolute difference of a shadow's scores from the primary's.",
            labels=["model", "version"],
        )
        compared = CounterMetricFamily(
            "driftgate_shadow_comparisons",
            "Requests compared between a shadow and the primary.",
            labels=["model", "version"],
        )
        for snapshot in self._mirror.agreement.snapshot():
            labels = [snapshot.model, str(snapshot.version)]
            compared.add_metric(labels, snapshot.comparisons)
            if (ratio := snapshot.label_agreement) is not None:
                agreement.add_metric(labels, ratio)
            if (mean := snapshot.mean_abs_diff) is not None:
                difference.add_metric(labels, mean)
        yield from (agreement, difference, compared)
        yield from self._drift()
        yield from self._quality()
        yield from self._business()

    def _drift(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        version_status = GaugeMetricFamily(
            "driftgate_drift_version_status",
            "Drift verdict of a version's inputs or outputs: 0 ok, 1 warn, 2 drift, "
            "-1 insufficient data.",
            labels=["model", "version", "direction"],
        )
        feature_status = GaugeMetricFamily(
            "driftgate_drift_feature_status",
            "Drift verdict of one feature (codes as above).",
            labels=["model", "version", "feature"],
        )
        statistic = GaugeMetricFamily(
            "driftgate_drift_statistic",
            "A drift statistic of one feature over the window.",
            labels=["model", "version", "feature", "statistic"],
        )
        samples = GaugeMetricFamily(
            "driftgate_drift_window_samples",
            "Sampled requests in the evaluated window.",
            labels=["model", "version"],
        )
        for report in self._monitor.reports():
            version = str(report.version)
            samples.add_metric([report.model, version], report.inputs.samples)
            for direction, part in (("input", report.inputs), ("output", report.outputs)):
                version_status.add_metric(
                    [report.model, version, direction], STATUS_CODES[part.status]
                )
                for assessment in part.assessment.features:
                    feature_status.add_metric(
                        [report.model, version, assessment.name], STATUS_CODES[assessment.status]
                    )
                for stats in part.statistics:
                    for name in DRIFT_STATISTICS:
                        figure = getattr(stats, name, None)
                        if isinstance(figure, float) and math.isfinite(figure):
                            statistic.add_metric([report.model, version, stats.name, name], figure)
        yield from (version_status, feature_status, statistic, samples)

    def _quality(self) -> Iterator[GaugeMetricFamily]:
        accuracy = GaugeMetricFamily(
            "driftgate_model_accuracy",
            "A classifier's accuracy over the drift window: realized from label feedback, "
            "estimated from calibrated confidence (no labels), or on the reference data.",
            labels=["model", "version", "kind"],
        )
        accuracy_error = GaugeMetricFamily(
            "driftgate_model_accuracy_standard_error",
            "Standard error of driftgate_model_accuracy: binomial for realized, "
            "sqrt(sum a(1-a))/n for estimated.",
            labels=["model", "version", "kind"],
        )
        mae = GaugeMetricFamily(
            "driftgate_model_mae",
            "A regressor's mean absolute error: realized from label feedback over the drift "
            "window, or on the reference data.",
            labels=["model", "version", "kind"],
        )
        mae_error = GaugeMetricFamily(
            "driftgate_model_mae_standard_error",
            "Standard error of the realized driftgate_model_mae.",
            labels=["model", "version", "kind"],
        )
        rows = GaugeMetricFamily(
            "driftgate_model_quality_rows",
            "Rows behind the window's quality: labelled (realized) or scored (estimated).",
            labels=["model", "version", "kind"],
        )
        for report in self._monitor.reports():
            quality = report.quality
            if quality is None:
                continue
            labels = [report.model, str(report.version)]
            rows.add_metric([*labels, "realized"], quality.labelled)
            if quality.estimable:
                rows.add_metric([*labels, "estimated"], quality.estimated_rows)
            for family, kind, figure in (
                (accuracy, "realized", quality.realized_accuracy),
                (accuracy_error, "realized", quality.realized_accuracy_error),
                (accuracy, "estimated", quality.estimated_accuracy),
                (accuracy_error, "estimated", quality.estimated_accuracy_error),
                (accuracy, "reference", quality.reference_accuracy),
                (mae, "realized", quality.realized_mae),
                (mae_error, "realized", quality.realized_mae_error),
                (mae, "reference", quality.reference_mae),
            ):
                if figure is not None:
                    family.add_metric([*labels, kind], figure)
        yield from (accuracy, accuracy_error, mae, mae_error, rows)

    def _business(self) -> Iterator[GaugeMetricFamily]:
        """Business values over the drift window; `name` is bounded by the allowed names
        (or `monitor.business.MAX_VALUE_NAMES` per report)."""
        labels = ["model", "version", "name"]
        families = {
            "count": GaugeMetricFamily(
                "driftgate_business_value_calls",
                "Calls whose feedback carried the business value, over the drift window.",
                labels=labels,
            ),
            "sum": GaugeMetricFamily(
                "driftgate_business_value_sum",
                "Sum of a business value over the drift window.",
                labels=labels,
            ),
            "mean": GaugeMetricFamily(
                "driftgate_business_value_mean",
                "Mean of a business value per call that carried it, over the drift window.",
                labels=labels,
            ),
            "variance": GaugeMetricFamily(
                "driftgate_business_value_variance",
                "Sample variance of a business value over the drift window.",
                labels=labels,
            ),
        }
        for report in self._monitor.reports():
            for name, value in report.business.items():
                for figure, family in families.items():
                    number = getattr(value, figure)
                    if number is not None:
                        family.add_metric([report.model, str(report.version), name], number)
        yield from families.values()
