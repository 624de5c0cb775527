"""`driftgate compare MODEL A B`: two versions side by side.

From the registry directly (`--home`, like `driftgate models show`): manifests and the
training sets' differences. With `--url`, from that running gateway instead
(`GET /v1/models/{m}/compare`, a `read` or `admin` token from `--token` or
`$DRIFTGATE_TOKEN`), which adds what both versions showed while serving.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.operator import AdminClient
from gateway.settings import Settings, load_client_settings
from gateway.tables import print_table

if TYPE_CHECKING:
    from gateway.live_evidence import LiveComparison, VersionEvidence
    from gateway.version_comparison import VersionComparison, VersionSummary
    from registry import TensorSpec


def add_compare_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `compare` to the CLI's subcommands."""
    compare = commands.add_parser(
        "compare",
        parents=[common],
        help="two versions of a model side by side",
        description="Manifests, training sets (PSI, KS and drift tests between them, from "
        "the reference profiles) and, with --url, live evidence from a running gateway.",
    )
    compare.add_argument("name", help="model name")
    compare.add_argument("a", type=int, help="a version (the reference side)")
    compare.add_argument("b", type=int, help="another version, compared against A")
    compare.add_argument(
        "--url", help="ask this running gateway, which adds live evidence (default: the registry)"
    )
    compare.add_argument("--token", help="a read or admin token (default $DRIFTGATE_TOKEN)")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(command=_compare)


def _compare(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.version_comparison import VersionComparison, compare_manifests

    if args.url is not None:
        client = AdminClient(load_client_settings(url=args.url, token=args.token))
        found = client.request("GET", f"/v1/models/{args.name}/compare?a={args.a}&b={args.b}")
        comparison = msgspec.convert(found, VersionComparison, strict=False)
        source = f"the gateway at {args.url}"
    else:
        from gateway.components import open_registry

        registry = open_registry(settings)
        comparison = compare_manifests(
            registry.manifest(args.name, args.a), registry.manifest(args.name, args.b)
        )
        source = f"the registry at {registry.location}"
    if args.json:
        print(msgspec.json.encode(comparison).decode())
        return 0
    _print(comparison, source)
    return 0


def _print(comparison: VersionComparison, source: str) -> None:
    a, b = comparison.a, comparison.b
    print(f"{comparison.model}: version {a.version} against version {b.version} (from {source})")
    _manifests(comparison)
    drift = comparison.training_sets
    print(f"\ntraining sets: {drift.rows_b} rows of version {b.version} against {drift.rows_a}")
    print_table(
        ["FEATURE", "PSI", "KS", "MEAN SHIFT", "STD RATIO", "P", "SHIFTED"],
        [
            [
                shift.name,
                _figure(shift.psi),
                _figure(shift.ks),
                _figure(shift.mean_shift),
                _figure(shift.std_ratio),
                _figure(shift.p_value),
                ", ".join(shift.large) or "-",
            ]
            for shift in drift.features
        ],
    )
    for label, names in [
        (f"only in version {a.version}", drift.only_in_a),
        (f"only in version {b.version}", drift.only_in_b),
        ("numeric in one, categorical in the other", drift.retyped),
    ]:
        if names:
            print(f"{label}: {', '.join(names)}")
    if comparison.live is None:
        print("\nlive evidence: ask a running gateway with --url")
    else:
        _live(comparison.live)


def _manifests(comparison: VersionComparison) -> None:
    a, b = comparison.a, comparison.b
    rows: list[tuple[str, Callable[[VersionSummary], str], str]] = [
        ("sha256", lambda s: s.sha256[:16], "sha256"),
        ("created", lambda s: f"{s.created_at:%Y-%m-%d %H:%M} by {s.created_by}", ""),
        ("owner", lambda s: s.owner or "-", "owner"),
        ("description", lambda s: s.description or "-", "description"),
        ("parent", lambda s: str(s.parent_version or "-"), "parent_version"),
        ("tags", lambda s: _pairs(s.tags), "tags"),
        ("metrics", lambda s: _pairs({k: f"{v:g}" for k, v in s.metrics.items()}), "metrics"),
        ("inputs", lambda s: _tensors(s.signature.inputs), "signature"),
        ("outputs", lambda s: _tensors(s.signature.outputs), "signature"),
        ("features", lambda s: str(len(s.features)), "features"),
        ("target", lambda s: s.target or "-", "target"),
        (
            "training data",
            lambda s: (
                f"{s.training_data.filename}, {s.training_data.rows} rows, "
                f"sha256 {s.training_data.sha256[:12]}"
            ),
            "training_data",
        ),
        ("reference accuracy", lambda s: _figure(s.reference_accuracy), "reference_accuracy"),
        ("reference MAE", lambda s: _figure(s.reference_mae), "reference_mae"),
    ]
    print_table(
        ["", f"VERSION {a.version}", f"VERSION {b.version}", "DIFFERS"],
        [
            [label, show(a), show(b), "*" if field in comparison.differences else ""]
            for label, show, field in rows
        ],
    )


def _live(live: LiveComparison) -> None:
    a, b = live.a, live.b
    seconds = live.window_end - live.window_start
    print(f"\nlive, over the last {seconds:.0f} s:")

    def quality(evidence: VersionEvidence) -> str:
        report = evidence.quality
        if report is None:
            return "-"
        if report.task == "regression":
            return f"MAE {_figure(report.realized_mae)} ({report.labelled} labels)"
        realized = f"{_figure(report.realized_accuracy)} ({report.labelled} labels)"
        return f"{realized}, estimated {_figure(report.estimated_accuracy)}"

    rows: list[tuple[str, Callable[[VersionEvidence], str]]] = [
        ("calls", lambda e: str(e.calls)),
        ("error rate", lambda e: _figure(e.error_rate)),
        ("latency p50", lambda e: _seconds(e.latency_p50_seconds)),
        ("latency p99", lambda e: _seconds(e.latency_p99_seconds)),
        ("drift", lambda e: e.drift_status or "not evaluated"),
        ("accuracy", quality),
    ]
    print_table(
        ["", f"VERSION {a.version}", f"VERSION {b.version}"],
        [[label, show(a), show(b)] for label, show in rows],
    )
    if live.outputs is not None:
        outputs = live.outputs
        print(f"outputs of {b.version} against {a.version}: {outputs.verdict} ({outputs.reason})")
    for shadow in live.shadows:
        print(
            f"version {shadow.shadow} as a shadow: {shadow.comparisons} calls compared, labels "
            f"equal {_figure(shadow.label_agreement)}, mean |difference| "
            f"{_figure(shadow.mean_abs_diff)}, {shadow.errors} failed"
        )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.3g} ms"


def _pairs(items: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in items.items()) or "-"


def _tensors(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {spec.datatype} {list(spec.shape)}" for spec in specs)
