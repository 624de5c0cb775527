"""The console's comparison page: two versions of a model side by side, in words.

It renders the `VersionComparison` that `GET /v1/models/{m}/compare` answers and
`driftgate compare` prints (`gateway.version_comparison`): the same figures, formatted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, Literal

import msgspec

from gateway.live_evidence import LiveComparison, LiveEvidence, VersionEvidence
from gateway.ui import words
from gateway.ui.version_page import QualityView, quality_view
from gateway.version_comparison import VersionComparison, VersionSummary, compare_versions
from monitor.reference_drift import FeatureShift, ReferenceDrift
from registry import ModelRegistry
from registry.manifest import TensorSpec

NONE: Final = "-"
Verdict = Literal["shifted", "unchanged", "too few rows"]
_VERDICT_CLASS: Final[dict[str, str]] = {
    "shifted": "status-drift",
    "unchanged": "status-ok",
    "too few rows": "status-insufficient_data",
}


class FieldRow(msgspec.Struct, frozen=True, kw_only=True):
    """One manifest field of both versions."""

    field: str  # the `VersionSummary` field ("metrics.auc" for one metric)
    label: str
    a: str
    b: str
    differs: bool


class ShiftRow(msgspec.Struct, frozen=True, kw_only=True):
    """One feature of B's training set against A's."""

    name: str
    kind: Literal["numeric", "categorical"]
    verdict: Verdict
    verdict_class: str
    psi: str
    ks: str
    p_value: str
    mean_shift: str
    std_ratio: str
    outside: str  # out of A's range (numeric) or unseen by A (categorical)
    missing: str  # "0.0% → 1.2%"
    large: tuple[str, ...]  # the effects over their lines
    reason: str


class SideView(msgspec.Struct, frozen=True, kw_only=True):
    """One version's traffic over the drift window."""

    version: int
    calls: int
    errors: int
    error_rate: str
    p50: str
    p99: str
    drift: str  # its latest drift status, "not evaluated" without one
    quality: QualityView | None


class ShadowRow(msgspec.Struct, frozen=True, kw_only=True):
    """How a version's shadow answers agreed with the primary's."""

    shadow: int
    comparisons: int
    errors: int
    label_agreement: str
    mean_abs_diff: str
    mean_rel_diff: str


class LiveView(msgspec.Struct, frozen=True, kw_only=True):
    """What both versions showed while serving."""

    window: str  # "2024-05-01 12:00:00 UTC to 12:05:00 UTC"
    served: bool  # both versions answered calls in the window
    a: SideView
    b: SideView
    outputs_verdict: str  # the output-divergence gate's, "" until both were evaluated
    outputs_class: str
    outputs_reason: str
    outputs_evidence: str
    shadows: tuple[ShadowRow, ...]


class CompareView(msgspec.Struct, frozen=True, kw_only=True):
    """The comparison page."""

    model: str
    a: int
    b: int
    manifest: tuple[FieldRow, ...]
    differing: int  # manifest rows that differ
    rows_a: int
    rows_b: int
    features: tuple[ShiftRow, ...]  # worst first: shifted, then by p-value
    shifted: int
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    retyped: tuple[str, ...]
    rules: str  # the lines the verdicts were held to
    live: LiveView | None  # None: no evidence was collected


async def compare_view(
    registry: ModelRegistry, evidence: LiveEvidence | None, *, name: str, a: int, b: int
) -> CompareView:
    """Versions `a` and `b` of `name`, as the compare API finds them, in words.

    Raises:
        ModelNotFoundError: An unknown model or version.
    """
    return comparison_view(await compare_versions(registry, name, a, b, evidence))


def comparison_view(comparison: VersionComparison) -> CompareView:
    """A `VersionComparison` formatted for the page."""
    manifest = _manifest(comparison.a, comparison.b, set(comparison.differences))
    drift = comparison.training_sets
    features = tuple(row for _, row in sorted(_shift(s) for s in drift.features))
    return CompareView(
        model=comparison.model,
        a=comparison.a.version,
        b=comparison.b.version,
        manifest=manifest,
        differing=sum(row.differs for row in manifest),
        rows_a=drift.rows_a,
        rows_b=drift.rows_b,
        features=features,
        shifted=sum(row.verdict == "shifted" for row in features),
        only_in_a=drift.only_in_a,
        only_in_b=drift.only_in_b,
        retyped=drift.retyped,
        rules=_rules(drift),
        live=_live(comparison.live) if comparison.live is not None else None,
    )


# Each manifest row: its field, its label and how a value reads.
_FIELDS: Final[tuple[tuple[str, str, Callable[[VersionSummary], str]], ...]] = (
    ("sha256", "sha256", lambda s: words.short_hash(s.sha256)),
    ("size_bytes", "size", lambda s: f"{s.size_bytes:,} bytes"),
    ("created_at", "created", lambda s: words.date(s.created_at)),
    ("created_by", "created by", lambda s: s.created_by or NONE),
    ("owner", "owner", lambda s: s.owner or NONE),
    ("parent_version", "parent", lambda s: f"v{s.parent_version}" if s.parent_version else NONE),
    ("description", "description", lambda s: s.description or NONE),
    ("signature", "inputs", lambda s: _tensors(s.signature.inputs)),
    ("signature", "outputs", lambda s: _tensors(s.signature.outputs)),
    ("features", "features", lambda s: ", ".join(s.features) or NONE),
    ("target", "target", lambda s: s.target or NONE),
    (
        "training_data",
        "training data",
        lambda s: (
            f"{s.training_data.filename} ({words.short_hash(s.training_data.sha256)}, "
            f"{s.training_data.rows:,} rows)"
        ),
    ),
    ("tags", "tags", lambda s: ", ".join(f"{k}={v}" for k, v in sorted(s.tags.items())) or NONE),
    ("reference_accuracy", "reference accuracy", lambda s: _optional(s.reference_accuracy)),
    ("reference_mae", "reference MAE", lambda s: _optional(s.reference_mae)),
)


def _manifest(a: VersionSummary, b: VersionSummary, differences: set[str]) -> tuple[FieldRow, ...]:
    """Every field of both manifests; each metric on a row of its own."""
    rows = []
    for field, label, read in _FIELDS:
        first, second = read(a), read(b)
        # A version's own identity (its hash, size, creation) differs by nature: not
        # flagged. The signature spans two rows: each is flagged where its text differs.
        differs = field in differences and (field != "signature" or first != second)
        rows.append(FieldRow(field=field, label=label, a=first, b=second, differs=differs))
    for metric in sorted({*a.metrics, *b.metrics}):
        mine, theirs = a.metrics.get(metric), b.metrics.get(metric)
        rows.append(
            FieldRow(
                field=f"metrics.{metric}",
                label=f"metric {metric}",
                a=_optional(mine),
                b=_optional(theirs),
                differs=mine != theirs,
            )
        )
    return tuple(rows)


def _tensors(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(
        f"{spec.name} {spec.datatype} [{', '.join(str(d) for d in spec.shape)}]" for spec in specs
    )


def _optional(value: float | None) -> str:
    return NONE if value is None else words.number(value, 4)


def _shift(shift: FeatureShift) -> tuple[tuple[int, float, float, str], ShiftRow]:
    """A feature's row, and its rank: shifted first, then the smallest p-value, then the
    largest PSI."""
    verdict: Verdict = (
        "shifted" if shift.large else "too few rows" if shift.p_value is None else "unchanged"
    )
    p_value = math.inf if shift.p_value is None else shift.p_value
    psi = -(shift.psi or 0.0)
    rank = ({"shifted": 0, "unchanged": 1}.get(verdict, 2), p_value, psi, shift.name)
    return rank, ShiftRow(
        name=shift.name,
        kind=shift.kind,
        verdict=verdict,
        verdict_class=_VERDICT_CLASS[verdict],
        psi=words.number(shift.psi),
        ks=words.number(shift.ks),
        p_value=words.p_value(math.nan if shift.p_value is None else shift.p_value),
        mean_shift=words.number(shift.mean_shift),
        std_ratio=words.number(shift.std_ratio),
        outside=words.share(shift.out_of_range_rate),
        missing=f"{words.share(shift.missing_rate_a)} → {words.share(shift.missing_rate_b)}",
        large=shift.large,
        reason=shift.reason,
    )


def _rules(drift: ReferenceDrift) -> str:
    rules = drift.rules
    return (
        f"shifted: a test significant at {rules.alpha:g} ({rules.correction} over the "
        f"features) with an effect over its line (PSI {rules.psi_effect:g}, mean shift "
        f"{rules.mean_shift_effect:g} std, spread ratio {rules.std_ratio_effect:g})"
    )


def _live(live: LiveComparison) -> LiveView:
    outputs = live.outputs
    return LiveView(
        window=f"{words.moment(live.window_start)} to {words.moment(live.window_end)}",
        served=live.a.calls > 0 and live.b.calls > 0,
        a=_side(live.a),
        b=_side(live.b),
        outputs_verdict=outputs.verdict if outputs else "",
        outputs_class=words.verdict_class(outputs.verdict) if outputs else "status-none",
        outputs_reason=outputs.reason if outputs else "",
        outputs_evidence=words.evidence(outputs.evidence) if outputs else "",
        shadows=tuple(
            ShadowRow(
                shadow=shadow.shadow,
                comparisons=shadow.comparisons,
                errors=shadow.errors,
                label_agreement=words.share(shadow.label_agreement),
                mean_abs_diff=words.number(shadow.mean_abs_diff),
                mean_rel_diff=words.number(shadow.mean_rel_diff),
            )
            for shadow in live.shadows
        ),
    )


def _side(evidence: VersionEvidence) -> SideView:
    def latency(value: float | None) -> str:
        return words.NOT_AVAILABLE if value is None else words.seconds(value)

    return SideView(
        version=evidence.version,
        calls=evidence.calls,
        errors=evidence.errors,
        error_rate=words.share(evidence.error_rate, 2),
        p50=latency(evidence.latency_p50_seconds),
        p99=latency(evidence.latency_p99_seconds),
        drift=(evidence.drift_status or "not evaluated").replace("_", " "),
        quality=quality_view(evidence.quality) if evidence.quality else None,
    )
