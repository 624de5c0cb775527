"""Operator commands that talk to a running gateway's admin API: traffic and audit."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import msgspec

from gateway.settings import ClientSettings, load_client_settings
from gateway.tables import print_table


class AdminError(Exception):
    """The gateway refused or could not be reached; the message says why."""


class AdminClient:
    """A thin client of `/admin` (bearer token, JSON in and out)."""

    def __init__(self, settings: ClientSettings, *, timeout: float = 30.0) -> None:
        self._url = settings.url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the gateway (`/admin/...`, `/v1/...`); a non-2xx answer raises `AdminError`
        with its error text."""
        try:
            # A client per call: its connection is closed here, never left to the collector.
            with httpx.Client(
                base_url=self._url, headers=self._headers, timeout=self._timeout
            ) as client:
                response = client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise AdminError(f"cannot reach the gateway at {self._url}: {exc}") from exc
        if response.is_error:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise AdminError(f"{response.status_code}: {message}")
        return response.json()


def add_operator_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `traffic`, `rollout`, `drift` and `audit` to the CLI's subcommands."""
    from gateway.approval_cli import add_approval_commands
    from gateway.rollout_cli import add_rollout_commands

    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument("--url", help="gateway URL (default $DRIFTGATE_URL or 127.0.0.1:8000)")
    client.add_argument("--token", help="admin token (default $DRIFTGATE_TOKEN)")
    client.add_argument("--json", action="store_true", help="machine-readable output")
    traffic = commands.add_parser("traffic", help="a model's traffic split").add_subparsers(
        required=True, metavar="ACTION"
    )
    show = traffic.add_parser("show", parents=[client], help="show the deployment")
    show.add_argument("name")
    show.set_defaults(command=_show)
    change = traffic.add_parser("set", parents=[client], help="replace the deployment")
    change.add_argument("name")
    change.add_argument("--stable", type=int, required=True, help="stable version")
    change.add_argument("--canary", type=int, help="canary version")
    change.add_argument("--weight", type=float, help="canary's percent of traffic (0-100)")
    change.add_argument(
        "--shadow",
        action="append",
        default=[],
        metavar="V[:PERCENT]",
        help="a shadow version and the percent of requests it mirrors",
    )
    change.add_argument("--reason", default="", help="why (recorded in the audit log)")
    change.set_defaults(command=_set)
    for action, text in [("promote", "make the canary stable"), ("rollback", "canary to 0%%")]:
        parser = traffic.add_parser(action, parents=[client], help=text)
        parser.add_argument("name")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.set_defaults(command=_act, action=action)
    add_approval_commands(traffic, client)
    add_rollout_commands(commands, client)
    drift = commands.add_parser("drift", parents=[client], help="a model's drift statistics")
    drift.add_argument("name")
    drift.add_argument("--version", type=int, help="one version (default: every monitored one)")
    drift.set_defaults(command=_drift)
    audit = commands.add_parser("audit", parents=[client], help="the audit log")
    audit.add_argument("name", nargs="?", help="only this model's entries")
    audit.add_argument("--verify", action="store_true", help="check the hash chain")
    audit.set_defaults(command=_audit)


def admin_client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(load_client_settings(url=args.url, token=args.token))


def _show(args: argparse.Namespace, _: object) -> int:
    print_deployment(
        admin_client(args).request("GET", f"/admin/models/{args.name}/deployment"), args.json
    )
    return 0


def _set(args: argparse.Namespace, _: object) -> int:
    if (args.canary is None) != (args.weight is None):
        raise ValueError("--canary and --weight go together")
    shadows = []
    for item in args.shadow:
        version, _, percent = item.partition(":")
        shadows.append({"version": int(version), "percent": float(percent or 100)})
    body = {
        "stable": args.stable,
        "shadows": shadows,
        "reason": args.reason,
        "canary": None if args.canary is None else {"version": args.canary, "weight": args.weight},
    }
    deployment = admin_client(args).request("PUT", f"/admin/models/{args.name}/deployment", body)
    print_deployment(deployment, args.json)
    return 0


def _act(args: argparse.Namespace, _: object) -> int:
    return post_reason(args, f"/admin/models/{args.name}/{args.action}")


def post_reason(args: argparse.Namespace, path: str) -> int:
    """POST the command's `--reason` to an admin action and print the deployment after it."""
    deployment = admin_client(args).request("POST", path, {"reason": args.reason})
    print_deployment(deployment, args.json)
    return 0


def _audit(args: argparse.Namespace, _: object) -> int:
    path = "/admin/audit" + (f"?model={args.name}" if args.name else "")
    report = admin_client(args).request("GET", path)
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print_table(
            ["SEQ", "TIME", "ACTOR", "ACTION", "MODEL", "REASON"],
            [
                [str(e["seq"]), e["time"][:19], e["actor"], e["action"], e["model"], e["reason"]]
                for e in report["entries"]
            ],
        )
    problem = report.get("problem")
    if not args.verify:
        if problem:
            print(f"warning: the audit log is damaged: {problem}", file=sys.stderr)
        return 0
    if report["intact"]:
        if lost := report.get("restored_after"):
            print(
                f"audit chain intact from seq {lost + 1}, where the state was restored after "
                f"the store lost it: entries up to seq {lost} are gone from the store"
            )
        else:
            print("audit chain intact")
        return 0
    where = report["first_invalid"]
    print(f"audit chain broken{'' if where is None else f' at entry {where} (0-based)'}: {problem}")
    return 1


def _drift(args: argparse.Namespace, _: object) -> int:
    client = admin_client(args)
    if args.version is None:
        reports = client.request("GET", f"/v1/models/{args.name}/drift")
    else:
        reports = [client.request("GET", f"/v1/models/{args.name}/versions/{args.version}/drift")]
    if args.json:
        print(msgspec.json.encode(reports).decode())
        return 0
    for report in reports:
        print(
            f"{report['model']} version {report['version']}: {report['status']} "
            f"(inputs {report['inputs']['status']}, outputs {report['outputs']['status']}; "
            f"{report['inputs']['samples']} samples over {report['window_seconds']:.0f} s)"
        )
        if report.get("quality"):
            print(_quality_line(report["quality"]))
        rows = []
        for direction in ("inputs", "outputs"):
            verdicts = {a["name"]: a for a in report[direction]["assessment"]["features"]}
            for stats in report[direction]["statistics"]:
                verdict = verdicts.get(stats["name"], {})
                rows.append(
                    [
                        direction[:-1],
                        stats["name"],
                        verdict.get("status", "-"),
                        str(stats["count"]),
                        *(_figure(stats.get(name)) for name in ("ks", "psi", "js", "mean_shift")),
                        _figure(verdict.get("p_value")),
                        "" if verdict.get("status") == "ok" else verdict.get("reason", ""),
                    ]
                )
        print_table(["", "FEATURE", "STATUS", "N", "KS", "PSI", "JS", "SHIFT", "P", "WHY"], rows)
    return 0


def _figure(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "-"


def _quality_line(quality: dict[str, Any]) -> str:
    """Realized and estimated accuracy (or MAE) over the window, beside the reference's."""

    def measured(value: object, error: object) -> str:
        return "-" if value is None else f"{value:.3f} ± {error:.3f}"

    labels = f"({quality['labelled']} labels)"
    if quality["task"] == "regression":
        realized = measured(quality["realized_mae"], quality["realized_mae_error"])
        return f"MAE: realized {realized} {labels}, reference {_figure(quality['reference_mae'])}"
    parts = [
        f"realized {measured(quality['realized_accuracy'], quality['realized_accuracy_error'])}"
        f" {labels}"
    ]
    if quality["estimable"]:
        estimated = measured(quality["estimated_accuracy"], quality["estimated_accuracy_error"])
        parts.append(f"estimated {estimated} ({quality['estimated_rows']} rows)")
    parts.append(f"reference {_figure(quality['reference_accuracy'])}")
    return "accuracy: " + ", ".join(parts)


def print_deployment(deployment: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(deployment).decode())
        return
    canary = deployment.get("canary")
    weight = canary["weight"] if canary else 0.0
    rows = [["stable", str(deployment["stable"]), f"{100 - weight:.2f}%"]]
    if canary:
        rows.append(["canary", str(canary["version"]), f"{weight:.2f}%"])
    rows += [
        ["shadow", str(s["version"]), f"mirrors {s['percent']:.2f}%"]
        for s in deployment.get("shadows", [])
    ]
    protected = ", protected" if deployment.get("protected") else ""
    print(f"{deployment['model']} (revision {deployment['revision']}{protected})")
    print_table(["ROLE", "VERSION", "TRAFFIC"], rows)
    if (change := deployment.get("approval")) and change["status"] == "pending":
        print(
            f"change {change['id']} ({change['action']} by {change['requested_by']}) awaits "
            f"a second admin: driftgate traffic approve {change['id']}"
        )
