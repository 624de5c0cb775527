"""The `/v1` monitor routes: drift evaluations, and label feedback."""

from __future__ import annotations

from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from gateway.auth import TokenGuard
from gateway.dataplane import DataPlane
from gateway.error_docs import errors
from gateway.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from gateway.settings import Settings
from monitor.business import ValueNameError
from monitor.drift import DriftMonitor, DriftReport
from monitor.feedback import FeedbackRequest, FeedbackResult, PredictionLogUnavailableError
from registry import InvalidNameError, parse_version


@get(
    "/models/{name:str}/versions/{version:str}/drift",
    summary="Drift of a model version",
    tags=["monitor"],
    responses=errors(404),
)
async def version_drift(
    monitor: NamedDependency[DriftMonitor], name: FromPath[str], version: FromPath[str]
) -> DriftReport:
    """Per-feature statistics of the inputs and outputs over the window, with thresholds,
    p-values, status (`ok`, `warn`, `drift`, `insufficient_data`), window size and span."""
    try:
        number = parse_version(version)
    except InvalidNameError as exc:
        raise NotFoundError(str(exc)) from exc
    if monitor.window(name, number) is None:
        raise NotFoundError(f"{name} version {number} is not being monitored (not loaded)")
    report = monitor.report(name, number)
    if report is None:
        raise NotFoundError(
            f"{name} version {number} has not been evaluated yet; evaluations run every "
            f"{monitor.config.interval_seconds:g} s"
        )
    return report


@get("/models/{name:str}/drift", summary="Drift of every monitored version", tags=["monitor"])
async def model_drift(
    monitor: NamedDependency[DriftMonitor], name: FromPath[str]
) -> list[DriftReport]:
    """The latest evaluation of each monitored version of a model, newest version first."""
    reports = [report for report in monitor.reports() if report.model == name]
    return sorted(reports, key=lambda report: -report.version)


@post(
    "/feedback",
    summary="Ground truth of earlier predictions",
    tags=["monitor"],
    status_code=HTTP_200_OK,
    responses=errors(404, 413, 503),
)
async def feedback(
    monitor: NamedDependency[DriftMonitor],
    dataplane: NamedDependency[DataPlane],
    settings: NamedDependency[Settings],
    data: JSONBody[FeedbackRequest],
) -> FeedbackResult:
    """Join labels with the sampled predictions they belong to (by request `id`): accuracy
    or absolute error per version, in metrics and the rollout gates. Ids that were never
    sampled, or whose prediction is too old, come back as `unknown` or `expired`. With Redis
    configured and unreachable: 503 and nothing joined (send the labels again later). With
    the inference log on, every label but `invalid` ones is also logged, for its exports.

    An item may carry business `values` for the call, with or without a label (`{"id":
    "r1", "values": {"revenue": 12.5}}`): at most 16 finite numbers, named as the setting
    `business_values` allows; they join as labels do, into the version's `business`
    figures and the rollout's business gates."""
    if monitor.predictions is None:
        raise NotFoundError("label feedback is not enabled")
    names = (name for item in data.items for name in item.values or ())
    try:
        dataplane.traffic.values.admit(names, settings.business_values)
    except ValueNameError as exc:
        raise BadRequestError(str(exc)) from exc
    try:
        result = await monitor.predictions.join(data.items)
    except PredictionLogUnavailableError as exc:
        raise ServiceUnavailableError(str(exc)) from exc
    if dataplane.inference_log is not None:
        dataplane.inference_log.offer_labels(data.items, result)
    return result


def monitor_router(labels: TokenGuard) -> Router:
    """The `/v1` monitor routes; label feedback behind `labels` (it decides the accuracy
    gates: a token with the `feedback` or `admin` role)."""
    labelled = Router(
        path="/", route_handlers=[feedback], guards=[labels], security=[{"bearer": []}]
    )
    return Router(path="/v1", route_handlers=[version_drift, model_drift, labelled])
