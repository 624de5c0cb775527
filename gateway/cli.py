"""The `driftgate` command line: the registry, and serving the gateway."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from gateway.compare_cli import add_compare_commands
from gateway.log_cli import add_log_commands
from gateway.operator import AdminError, add_operator_commands
from gateway.settings import Settings, load_settings, settings_environ
from gateway.tables import print_table
from gateway.version import driftgate_version
from registry import DamagedVersionError, Manifest, ModelRegistry, RegistryError
from registry.manifest import encode_manifest, parse_pairs


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `driftgate` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(home=getattr(args, "home", None))
        result: int = args.command(args, settings)
    except (RegistryError, AdminError, ValueError, OSError) as exc:
        print(f"driftgate: error: {exc}", file=sys.stderr)
        return 1  # a failure of the command; argparse keeps 2 for a wrong command line
    return result


def _parser() -> argparse.ArgumentParser:
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory (default: $DRIFTGATE_HOME or ./.driftgate)",
    )
    parser = argparse.ArgumentParser(prog="driftgate", parents=[home], description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {driftgate_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[home], help="run the gateway")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.add_argument(
        "--grpc-port", type=int, help="port of the gRPC service (default 8001; 0: no gRPC)"
    )
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument(
        "--demo", action="store_true", help="register the demo model first if the registry is empty"
    )
    serve.set_defaults(command=_serve)

    models = commands.add_parser("models", help="the model registry").add_subparsers(
        required=True, metavar="ACTION"
    )
    register = models.add_parser("register", parents=[home], help="register a new version")
    register.add_argument("name", help="model name")
    register.add_argument("model", type=Path, help="the ONNX file")
    register.add_argument(
        "--reference", type=Path, required=True, help="training data (.parquet or .csv)"
    )
    register.add_argument("--target", help="the label column of the reference data, if any")
    register.add_argument("--description", default="", help="what this version is")
    register.add_argument("--tag", action="append", default=[], metavar="K=V", help="a tag")
    register.add_argument("--metric", action="append", default=[], metavar="K=V", help="a metric")
    register.add_argument("--owner", default="", help="team or person answerable for it")
    register.add_argument(
        "--sensitive",
        action="append",
        default=[],
        metavar="FEATURE",
        help="a feature never exported as it is (dropped or hashed)",
    )
    register.set_defaults(command=_register)

    listing = models.add_parser("list", parents=[home], help="list models and versions")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(command=_list)

    show = models.add_parser("show", parents=[home], help="show a version's manifest")
    show.add_argument("name")
    show.add_argument("version", nargs="?", help="version (default: the latest)")
    show.add_argument("--json", action="store_true", help="the full manifest as JSON")
    show.set_defaults(command=_show)

    demo = models.add_parser(
        "init-demo", parents=[home], help="register the demo model if the registry is empty"
    )
    demo.set_defaults(command=_init_demo)
    demo_story = commands.add_parser(
        "demo", parents=[home], help="the closed loop in a minute: rollback, promotion, drift"
    )
    demo_story.add_argument(
        "--redis-url", default="", help="run two gateway processes sharing this Redis"
    )
    demo_story.add_argument(
        "--ui",
        action="store_true",
        help="then keep the gateway up and print the console's URL and tokens, until Ctrl-C",
    )
    demo_story.set_defaults(command=_demo)
    add_operator_commands(commands, home)
    add_log_commands(commands, home)
    add_compare_commands(commands, home)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.server import serve

    settings = msgspec.structs.replace(
        settings,
        **{
            key: value
            for key in ("host", "port", "grpc_port", "workers")
            if (value := getattr(args, key)) is not None
        },
    )
    if args.demo:
        _init_demo(args, settings)
    from gateway.components import check_state

    check_state(settings)  # one clear line now, not a traceback from every worker
    # Workers are separate processes: they read the same settings from the environment
    # (secrets excepted: they read those where this process did, see settings_environ).
    os.environ.update(settings_environ(settings))
    serve(settings)
    return 0


def _register(args: argparse.Namespace, settings: Settings) -> int:
    manifest = _registry(settings).register(
        args.name,
        args.model,
        args.reference,
        target=args.target,
        description=args.description,
        tags=parse_pairs(args.tag, str),
        metrics=parse_pairs(args.metric, float),
        owner=args.owner,
        sensitive=args.sensitive,
    )
    print(f"registered {manifest.name} version {manifest.version} (sha256 {manifest.sha256})")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    rows: list[dict[str, Any]] = []
    manifests: dict[str, Manifest] = {}
    for name in registry.models():
        versions = registry.versions(name)
        row: dict[str, Any] = {"name": name, "versions": versions, "latest": versions[-1]}
        try:  # a damaged latest version is listed as such; the other models still are
            manifests[name] = registry.manifest(name)
        except DamagedVersionError as exc:
            row["error"] = str(exc)
        rows.append(row)
    if args.json:
        print(msgspec.json.encode(rows).decode())
        return 0
    print_table(
        ["MODEL", "VERSIONS", "LATEST", "OWNER", "CREATED"],
        [
            [
                row["name"],
                str(len(row["versions"])),
                str(row["latest"]),
                *(
                    [m.owner, m.created_at.isoformat(timespec="seconds")]
                    if (m := manifests.get(row["name"]))
                    else ["-", "damaged"]
                ),
            ]
            for row in rows
        ],
    )
    for row in rows:
        if "error" in row:
            print(f"warning: {row['error']}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    manifest = _registry(settings).manifest(args.name, args.version)
    if args.json:
        print(encode_manifest(manifest).decode())
        return 0
    _describe(manifest)
    return 0


def _init_demo(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.demo import ensure_demo_model

    manifest = ensure_demo_model(_registry(settings), settings.home / "demo")
    if manifest is not None:
        print(f"registered {manifest.name} version {manifest.version} (the demo model)")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from gateway.demo_story import run_demo

    try:
        outcome = asyncio.run(
            run_demo(getattr(args, "home", None), redis_url=args.redis_url, ui=args.ui)
        )
    except KeyboardInterrupt:  # how `--ui` ends, once the story has been told
        if not args.ui:
            raise
        print("\nstopped")
        return 0
    told = (outcome["v2"], outcome["v3"], outcome["retraining"])
    return 0 if told == ("rolled_back", "promoted", True) else 1


def _describe(manifest: Manifest) -> None:
    fields = [
        ("model", f"{manifest.name} version {manifest.version}"),
        ("sha256", manifest.sha256),
        ("size", f"{manifest.size_bytes} bytes"),
        (
            "created",
            f"{manifest.created_at.isoformat(timespec='seconds')} by {manifest.created_by}",
        ),
        ("owner", manifest.owner or "-"),
        ("description", manifest.description or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in manifest.tags.items()) or "-"),
        ("metrics", ", ".join(f"{k}={v:g}" for k, v in manifest.metrics.items()) or "-"),
        (
            "training data",
            f"{manifest.training_data.filename}, {manifest.training_data.rows} "
            f"rows, sha256 {manifest.training_data.sha256[:16]}",
        ),
        ("features", f"{len(manifest.features.names)} ({manifest.features.layout})"),
    ]
    for spec in manifest.signature.inputs:
        fields.append(("input", f"{spec.name} {spec.datatype} {list(spec.shape)}"))
    for spec in manifest.signature.outputs:
        fields.append(("output", f"{spec.name} {spec.datatype} {list(spec.shape)}"))
    print_table(["FIELD", "VALUE"], [list(row) for row in fields])


def _registry(settings: Settings) -> ModelRegistry:
    # Imported here: the operator commands never load the server's parts.
    from gateway.components import open_registry

    return open_registry(settings)
