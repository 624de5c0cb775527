"""Two versions of a model side by side, on evidence: what their manifests record, how far
apart their training sets are (`monitor.reference_drift`), and what they showed while
serving (`gateway.live_evidence`).

Transport-agnostic: `GET /v1/models/{m}/compare`, `driftgate compare` and the console's
version page all render the same `VersionComparison`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec

from gateway.live_evidence import LiveComparison, LiveEvidence
from monitor.reference_drift import ReferenceDrift, reference_drift
from registry import DataFingerprint, Manifest, ModelRegistry, Signature


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What one version's manifest records, without its profile's bins."""

    version: int
    sha256: str
    size_bytes: int
    created_at: datetime
    created_by: str
    owner: str
    description: str
    tags: dict[str, str]
    metrics: dict[str, float]
    parent_version: int | None
    signature: Signature
    features: tuple[str, ...]
    target: str | None
    training_data: DataFingerprint
    reference_accuracy: float | None  # on its labelled reference, at registration
    reference_mae: float | None


class VersionComparison(msgspec.Struct, frozen=True, kw_only=True):
    """Versions `a` and `b` of `model`, side by side."""

    model: str
    a: VersionSummary
    b: VersionSummary
    differences: tuple[str, ...]  # the summary fields whose values differ, in field order
    training_sets: ReferenceDrift  # B's training set against A's, feature by feature
    live: LiveComparison | None = None  # None: no running gateway was asked


def compare_manifests(
    a: Manifest, b: Manifest, live: LiveComparison | None = None
) -> VersionComparison:
    """Compare two manifests of one model (and add `live` evidence, if any)."""
    first, second = summarize(a), summarize(b)
    unchanging = {"version", "sha256", "size_bytes", "created_at", "created_by"}
    differences = tuple(
        field
        for field in VersionSummary.__struct_fields__
        if field not in unchanging and getattr(first, field) != getattr(second, field)
    )
    return VersionComparison(
        model=a.name,
        a=first,
        b=second,
        differences=differences,
        training_sets=reference_drift(a.profile, b.profile),
        live=live,
    )


async def compare_versions(
    registry: ModelRegistry, model: str, a: int, b: int, evidence: LiveEvidence | None = None
) -> VersionComparison:
    """Versions `a` and `b` of `model` from the registry, with their live evidence when
    `evidence` is given (a running gateway's).

    Raises:
        ModelNotFoundError: An unknown model or version.
        InvalidNameError: A model name that cannot exist.
    """
    first, second = await asyncio.to_thread(
        lambda: (registry.manifest(model, a), registry.manifest(model, b))
    )
    live = await evidence.compare(model, a, b) if evidence is not None else None
    # numba statistics over a few hundred bins per feature: milliseconds, but not on the loop.
    return await asyncio.to_thread(compare_manifests, first, second, live)


def summarize(manifest: Manifest) -> VersionSummary:
    """A manifest's record, without its reference profile."""
    quality = manifest.quality
    return VersionSummary(
        version=manifest.version,
        sha256=manifest.sha256,
        size_bytes=manifest.size_bytes,
        created_at=manifest.created_at,
        created_by=manifest.created_by,
        owner=manifest.owner,
        description=manifest.description,
        tags=manifest.tags,
        metrics=manifest.metrics,
        parent_version=manifest.parent_version,
        signature=manifest.signature,
        features=manifest.features.names,
        target=manifest.target,
        training_data=manifest.training_data,
        reference_accuracy=quality.accuracy if quality else None,
        reference_mae=quality.mae if quality else None,
    )
