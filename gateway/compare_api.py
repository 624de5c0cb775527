"""`GET /v1/models/{m}/compare?a=&b=`: a thin handler over `gateway.version_comparison`."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from gateway.auth import TokenGuard
from gateway.dataplane import DataPlane
from gateway.error_docs import errors
from gateway.live_evidence import LiveEvidence
from gateway.version_comparison import VersionComparison, compare_versions

Version = Annotated[int, QueryParameter(ge=1, description="a version number of the model")]


@get(
    "/models/{name:str}/compare",
    summary="Two versions side by side",
    tags=["monitor"],
    responses=errors(404, 503),
)
async def compare(
    dataplane: NamedDependency[DataPlane],
    evidence: NamedDependency[LiveEvidence],
    name: FromPath[str],
    a: Version,
    b: Version,
) -> VersionComparison:
    """Versions `a` and `b`: their manifests (signature, training-data fingerprint,
    metrics, owner, parent) and the fields that differ; B's training set against A's,
    feature by feature (PSI, KS, mean shift and the drift tests, from the reference profiles
    alone); and what both showed while serving, over the drift window: calls, error rate,
    latency p50 and p99, realized and estimated quality, B's outputs against A's by the
    rollout's output-divergence gate, and shadow agreement where either ran as a shadow."""
    return await compare_versions(dataplane.repository.registry, name, a, b, evidence)


def compare_router(guard: TokenGuard, evidence: LiveEvidence) -> Router:
    """The comparison route, behind `guard`: manifests are for tokens that read the admin
    API (`read` or `admin`)."""
    return Router(
        path="/v1",
        route_handlers=[compare],
        guards=[guard],
        security=[{"bearer": []}],
        dependencies={"evidence": Provide(lambda: evidence, use_cache=True, sync_to_thread=False)},
    )
