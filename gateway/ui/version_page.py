"""The console's version page: every feature's drift, worst first, drawn and in words."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence
from typing import Final, Literal

import msgspec

from gateway.deployments import DeploymentManager
from gateway.errors import NotFoundError
from gateway.ui import charts, feature_charts, words
from gateway.ui.charts import Chart
from gateway.ui.models_page import DriftWord, Role, drift_word
from monitor.detector import FeatureAssessment
from monitor.drift import DirectionReport, DriftHistory, DriftMonitor, DriftReport
from monitor.layout import (
    CategoricalStatistics,
    FeatureStatistics,
    NumericStatistics,
    WindowCounts,
    WindowLayout,
)
from monitor.quality import QualityReport
from monitor.sampling import input_profiles
from registry import InvalidNameError, Manifest, ModelNotFoundError, ModelRegistry
from registry.manifest import FeatureProfile, NumericProfile

HISTORY_ROWS: Final = 8  # features shown under the version in the status-over-time chart
NAMED: Final = 5  # features an alarm names before "and N more"
TESTS: Final[dict[str, str]] = {
    "ks": "KS",
    "chi_square": "chi-square",
    "missing": "missing rate",
    "out_of_range": "out of range",
    "unseen": "unseen categories",
}
EFFECTS: Final[dict[str, str]] = {
    "psi": "PSI",
    "mean_shift": "mean shift (std)",
    "std_ratio": "spread ratio",
    "tails": "tails (h)",
    "missing": "missing rate (h)",
    "out_of_range": "out of range (h)",
    "unseen": "unseen (h)",
}


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    """One named number of a feature's evidence, formatted."""

    name: str  # "PSI", "mean shift (std)", "KS", ...
    value: str  # "0.123", "1.02", "3.2e-05"
    flagged: bool = False  # over its line (an effect) or under its level (a test)


class FeatureView(msgspec.Struct, frozen=True, kw_only=True):
    """One input feature or output of a version: its verdict, evidence and distribution."""

    # What it is and its verdict ("not evaluated yet" or "not monitored" before any).
    name: str
    direction: Literal["input", "output"]
    kind: Literal["numeric", "categorical"]
    status: DriftWord
    status_class: str
    reason: str  # the verdict in words, from the detector
    # The evidence, formatted ("n/a" where not defined).
    p_value: str  # the feature's combined p-value
    level: str  # the corrected level it is held to
    count: int  # values present in the window
    missing_rate: str  # "1.2%"
    streak: int  # consecutive evaluations significant with a large effect
    tests: tuple[Figure, ...]  # p-value of each test that ran; flagged when significant
    effects: tuple[Figure, ...]  # effect sizes; flagged when over their line
    statistics: tuple[Figure, ...]  # the other statistics: KS, JS, Hellinger, chi-square, ...
    # Reference and live window overlaid.
    chart: Chart


class QualityView(msgspec.Struct, frozen=True, kw_only=True):
    """A version's model quality over the window, in words."""

    task: Literal["classification", "regression"]
    labelled: int  # predictions whose label arrived in the window
    realized: str  # "accuracy 0.912 ± 0.021", "MAE 0.31 ± 0.02", or "no labels yet"
    estimated: str  # "accuracy 0.90 ± 0.01 from 400 rows", or "not estimable"
    reference: str  # "accuracy 0.93 on 500 reference rows", or "no labelled reference"


class VersionView(msgspec.Struct, frozen=True, kw_only=True):
    """The version page: every feature's drift, worst first, and the version's verdict."""

    # Identity.
    model: str
    version: int
    role: Role
    owner: str
    created: str
    sha256_short: str
    training_data_short: str
    # The latest evaluation.
    status: DriftWord
    status_class: str
    evaluated: str  # "2024-05-01 12:00:05 UTC", "" before the first evaluation
    window: str  # "5 min: 400 input rows, 400 output rows"
    alarm: str  # which features drift or warn, and why, in sentences
    tally: str  # "2 drift, 1 warn, 197 ok"
    # Every input feature and output, sorted worst first (drift, warn, insufficient data,
    # ok; then by p-value).
    features: tuple[FeatureView, ...]
    outputs: tuple[FeatureView, ...]
    # The version's status, and its worst features', over the kept evaluations.
    history: Chart | None  # None before the first evaluation
    quality: QualityView | None


async def version_view(
    manager: DeploymentManager, monitor: DriftMonitor, *, name: str, version: int
) -> VersionView:
    """One version's drift, feature by feature.

    Raises:
        NotFoundError: The model or version is not registered.
    """
    watch = monitor.window(name, version)
    manifest = (
        watch.manifest
        if watch is not None
        else await asyncio.to_thread(_manifest, manager.registry, name, version)
    )
    report = monitor.report(name, version)
    counts = monitor.live_counts(name, version)
    status = drift_word(monitor, name, version)
    features = _direction(
        "input",
        input_profiles(manifest),
        report.inputs if report else None,
        counts=counts.inputs if counts else None,
        layout=counts.input_layout if counts else None,
        status=status,
    )
    outputs = _direction(
        "output",
        manifest.profile.outputs,
        report.outputs if report else None,
        counts=counts.outputs if counts else None,
        layout=counts.output_layout if counts else None,
        status=status,
    )
    deployment = manager.deployments().get(name)
    role: Role = ""
    if deployment is not None:
        canary, shadows = deployment.canary, {s.version for s in deployment.shadows}
        role = (
            "stable"
            if deployment.stable == version
            else "canary"
            if canary is not None and canary.version == version
            else "shadow"
            if version in shadows
            else ""
        )
    history = monitor.history(name, version)
    return VersionView(
        model=name,
        version=version,
        role=role,
        owner=manifest.owner,
        created=words.date(manifest.created_at),
        sha256_short=words.short_hash(manifest.sha256),
        training_data_short=words.short_hash(manifest.training_data.sha256),
        status=status,
        status_class=words.status_class(status),
        evaluated=words.moment(report.evaluated_at) if report else "",
        window=_window(report),
        alarm=_alarm(report, features, outputs, status, monitor.config.interval_seconds),
        tally=_tally([*features, *outputs]),
        features=features,
        outputs=outputs,
        history=_history(history) if history and history.evaluations else None,
        quality=quality_view(report.quality) if report and report.quality else None,
    )


def _manifest(registry: ModelRegistry, name: str, version: int) -> Manifest:
    try:
        return registry.manifest(name, version)
    except (ModelNotFoundError, InvalidNameError) as exc:
        raise NotFoundError(str(exc)) from exc


def _direction(
    direction: Literal["input", "output"],
    profiles: Sequence[FeatureProfile],
    report: DirectionReport | None,
    *,
    counts: WindowCounts | None,
    layout: WindowLayout | None,
    status: DriftWord,
) -> tuple[FeatureView, ...]:
    """Every feature of one direction, worst first."""
    assessments = {a.name: a for a in report.assessment.features} if report else {}
    statistics = {s.name: s for s in report.statistics} if report else {}
    indices = {name: index for index, name in enumerate(layout.names)} if layout else {}
    ranked = []
    for profile in profiles:
        index = indices.get(profile.name)
        live = None
        if layout is not None and counts is not None and index is not None:
            live = (layout, counts, index)
        assessment = assessments.get(profile.name)
        view = _feature(
            direction, profile, assessment, statistics.get(profile.name), live=live, status=status
        )
        ranked.append((_severity(view.status, assessment), view))
    ranked.sort(key=lambda pair: pair[0])
    return tuple(view for _, view in ranked)


def _severity(status: str, assessment: FeatureAssessment | None) -> tuple[int, float, str]:
    """Worst first: drift, warn, insufficient data, ok, then by p-value, then by name."""
    p_value = (
        math.inf if assessment is None or math.isnan(assessment.p_value) else assessment.p_value
    )
    name = assessment.name if assessment else ""
    return words.SEVERITY.get(status, len(words.SEVERITY)), p_value, name


def _feature(
    direction: Literal["input", "output"],
    profile: FeatureProfile,
    assessment: FeatureAssessment | None,
    statistics: FeatureStatistics | None,
    *,
    live: feature_charts.Live | None,
    status: DriftWord,
) -> FeatureView:
    numeric = isinstance(profile, NumericProfile)
    chart = feature_charts.reference_and_live(
        f"{profile.name}: reference and live window", profile, live
    )
    if assessment is None:
        unjudged: DriftWord = status if status not in words.SEVERITY else "insufficient_data"
        return FeatureView(
            name=profile.name,
            direction=direction,
            kind="numeric" if numeric else "categorical",
            status=unjudged,
            status_class=words.status_class(unjudged),
            reason="no live values judged yet",
            p_value=words.NOT_AVAILABLE,
            level=words.NOT_AVAILABLE,
            count=0,
            missing_rate=words.NOT_AVAILABLE,
            streak=0,
            tests=(),
            effects=(),
            statistics=(),
            chart=chart,
        )
    return FeatureView(
        name=profile.name,
        direction=direction,
        kind="numeric" if numeric else "categorical",
        status=assessment.status,
        status_class=words.status_class(assessment.status),
        reason=assessment.reason,
        p_value=words.p_value(assessment.p_value),
        level=words.p_value(assessment.level),
        count=assessment.count,
        missing_rate=words.share(statistics.missing_rate) if statistics else words.NOT_AVAILABLE,
        streak=assessment.streak,
        tests=tuple(
            Figure(
                name=TESTS.get(test, test),
                value=words.p_value(p),
                flagged=test in assessment.significant,
            )
            for test, p in assessment.tests.items()
        ),
        effects=tuple(
            Figure(
                name=EFFECTS.get(effect, effect),
                value=words.number(value),
                flagged=effect in assessment.large,
            )
            for effect, value in assessment.effects.items()
        ),
        statistics=_statistics(statistics) if statistics else (),
        chart=chart,
    )


def _statistics(s: FeatureStatistics) -> tuple[Figure, ...]:
    figures = [
        Figure(name="JS divergence", value=words.number(s.js)),
        Figure(name="Hellinger", value=words.number(s.hellinger)),
        Figure(name="chi-square", value=f"{words.number(s.chi_square)} ({s.chi_square_dof} dof)"),
    ]
    if isinstance(s, NumericStatistics):
        figures += [
            Figure(name="KS", value=words.number(s.ks)),
            Figure(name="Wasserstein (std)", value=words.number(s.wasserstein)),
            Figure(name="out of range", value=words.share(s.out_of_range_rate)),
            Figure(name="in the tails", value=words.share(s.tail_rate)),
        ]
    elif isinstance(s, CategoricalStatistics):
        figures.append(Figure(name="unseen", value=words.share(s.unseen_rate)))
    return tuple(figures)


def _window(report: DriftReport | None) -> str:
    if report is None:
        return ""
    return (
        f"{words.duration(report.window_seconds)}: {report.inputs.samples} input rows, "
        f"{report.outputs.samples} output rows"
    )


def _alarm(
    report: DriftReport | None,
    features: Sequence[FeatureView],
    outputs: Sequence[FeatureView],
    status: DriftWord,
    interval: float,
) -> str:
    """Which features drift or warn and why, in sentences; or why there is no verdict."""
    if status == "not monitored":
        return "Not monitored: the version is not loaded (it takes no traffic)."
    if report is None:
        return f"Not evaluated yet: evaluations run every {interval:g} s."
    sentences = []
    for word, level in (("Drift", "drift"), ("Warning", "warn")):
        for kind, views in (("input", features), ("output", outputs)):
            found = [view for view in views if view.status == level]
            if found:
                named = "; ".join(f"{view.name} ({view.reason})" for view in found[:NAMED])
                more = f"; and {len(found) - NAMED} more" if len(found) > NAMED else ""
                total = len(views)
                sentences.append(f"{word} in {len(found)} of {total} {kind}s: {named}{more}.")
    if sentences:
        return " ".join(sentences)
    if status == "insufficient_data":
        return (
            f"Too few values to judge yet: {report.inputs.samples} rows in the window, "
            f"{report.inputs.assessment.rules.min_samples} needed."
        )
    return "No drift: every tested input and output matches its reference."


def _tally(views: Sequence[FeatureView]) -> str:
    counts: dict[str, int] = {}
    for view in views:
        counts[view.status] = counts.get(view.status, 0) + 1
    ordered = sorted(counts, key=lambda s: words.SEVERITY.get(s, len(words.SEVERITY)))
    return ", ".join(f"{counts[s]} {words.STATUS_WORDS.get(s, s)}" for s in ordered)


def _history(history: DriftHistory) -> Chart:
    """The version's status over time, and the features that were worst in that time."""
    evaluations = history.evaluations
    names = (*history.inputs, *history.outputs)
    # Each feature's worst status over the kept evaluations, and how often it was not ok.
    worst: dict[int, tuple[int, int]] = {}
    for evaluation in evaluations:
        if evaluation.status not in ("warn", "drift"):
            continue  # the version's status is its worst feature's: none warned
        for index, status in _alarmed(evaluation.inputs, evaluation.outputs):
            rank, times = worst.get(index, (len(words.SEVERITY), 0))
            worst[index] = (min(rank, words.SEVERITY[status]), times + 1)
    shown = sorted(worst, key=lambda i: (worst[i][0], -worst[i][1], names[i]))[:HISTORY_ROWS]
    rows: list[tuple[str, Sequence[str]]] = [("version", [e.status for e in evaluations])]
    inputs = len(history.inputs)
    for index in shown:
        if index < inputs:
            rows.append((names[index], [e.inputs[index] for e in evaluations]))
        else:
            rows.append((names[index], [e.outputs[index - inputs] for e in evaluations]))
    return charts.status_strip("drift status over time", [e.at for e in evaluations], rows)


def _alarmed(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(index, status) of every input, then output (indexed after the inputs), that warned
    or drifted; found by `tuple.index`, which scans in C: a page reads 360 evaluations."""
    for offset, statuses in ((0, inputs), (len(inputs), outputs)):
        for status in ("warn", "drift"):
            found = -1
            while True:
                try:
                    found = statuses.index(status, found + 1)
                except ValueError:
                    break
                yield offset + found, status


def quality_view(quality: QualityReport) -> QualityView:
    """A version's quality report in words."""
    if quality.task == "regression":
        realized = (
            f"MAE {words.number(quality.realized_mae)} ± "
            f"{words.number(quality.realized_mae_error, 2)}"
            if quality.realized_mae is not None
            else "no labels yet"
        )
        reference = (
            f"MAE {words.number(quality.reference_mae)} on {quality.reference_rows} reference rows"
            if quality.reference_mae is not None
            else "no labelled reference"
        )
    else:
        realized = (
            f"accuracy {words.number(quality.realized_accuracy)} ± "
            f"{words.number(quality.realized_accuracy_error, 2)}"
            if quality.realized_accuracy is not None
            else "no labels yet"
        )
        reference = (
            f"accuracy {words.number(quality.reference_accuracy)} on {quality.reference_rows} "
            "reference rows"
            if quality.reference_accuracy is not None
            else "no labelled reference"
        )
    estimated = (
        f"accuracy {words.number(quality.estimated_accuracy)} ± "
        f"{words.number(quality.estimated_accuracy_error, 2)} from {quality.estimated_rows} rows"
        if quality.estimable and quality.estimated_accuracy is not None
        else "not estimable"
        if not quality.estimable
        else "no rows yet"
    )
    return QualityView(
        task=quality.task,
        labelled=quality.labelled,
        realized=realized,
        estimated=estimated,
        reference=reference,
    )
