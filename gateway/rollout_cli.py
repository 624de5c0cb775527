"""`driftgate rollout start | status | pause | resume | abort`: automatic canary rollouts."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from gateway.operator import admin_client, post_reason, print_deployment
from gateway.tables import print_table


def add_rollout_commands(commands: Any, client: argparse.ArgumentParser) -> None:
    """Add `rollout` to the CLI's subcommands (`client` carries --url, --token, --json)."""
    rollout = commands.add_parser("rollout", help="automatic canary rollouts").add_subparsers(
        required=True, metavar="ACTION"
    )
    begin = rollout.add_parser("start", parents=[client], help="start a rollout")
    begin.add_argument("name")
    begin.add_argument("--version", type=int, required=True, help="the version to roll out")
    begin.add_argument("--steps", help="canary weights, e.g. 5,25,50 (last passes: promote)")
    begin.add_argument("--interval", type=float, help="seconds between evaluations")
    begin.add_argument("--min-samples", type=int, help="canary calls an evaluation needs")
    begin.add_argument("--failure-limit", type=int, help="failed evaluations in all")
    begin.add_argument("--consecutive-failure-limit", type=int, help="failed in a row")
    begin.add_argument("--max-error-rate", type=float, help="5xx share gate")
    begin.add_argument("--max-p99-ratio", type=float, help="p99 over stable's p99 gate")
    begin.add_argument("--max-divergence", type=float, help="output divergence gate")
    begin.add_argument("--webhook", help="gate URL: a 2xx answer passes")
    begin.add_argument("--reason", default="", help="why (recorded in the audit log)")
    begin.set_defaults(command=_rollout_start)
    shown = rollout.add_parser("status", parents=[client], help="where a rollout stands")
    shown.add_argument("name")
    shown.set_defaults(command=_rollout_status)
    for action in ("pause", "resume", "abort"):
        steer = rollout.add_parser(action, parents=[client], help=f"{action} the rollout")
        steer.add_argument("name")
        steer.add_argument("--reason", default="", help="why (recorded in the audit log)")
        steer.set_defaults(command=_rollout_steer, action=action)


def _rollout_start(args: argparse.Namespace, _: object) -> int:
    config: dict[str, Any] = {}
    if args.steps:
        config["steps"] = [float(step) for step in args.steps.split(",")]
    for option, key in [
        ("interval", "interval_seconds"),
        ("min_samples", "min_samples"),
        ("failure_limit", "failure_limit"),
        ("consecutive_failure_limit", "consecutive_failure_limit"),
    ]:
        if (value := getattr(args, option)) is not None:
            config[key] = value
    gates = {
        key: value
        for option, key in [
            ("max_error_rate", "max_error_rate"),
            ("max_p99_ratio", "max_p99_ratio"),
            ("max_divergence", "max_output_divergence"),
            ("webhook", "webhook"),
        ]
        if (value := getattr(args, option)) is not None
    }
    if gates:
        config["gates"] = gates
    body = {"version": args.version, "config": config, "reason": args.reason}
    deployment = admin_client(args).request("POST", f"/admin/models/{args.name}/rollout", body)
    print_deployment(deployment, args.json)
    return 0


def _rollout_status(args: argparse.Namespace, _: object) -> int:
    state = admin_client(args).request("GET", f"/admin/models/{args.name}/rollout")
    if args.json:
        print(msgspec.json.encode(state).decode())
        return 0
    steps = state["config"]["steps"]
    print(
        f"{args.name}: rollout of version {state['version']} {state['status']}, step "
        f"{state['step'] + 1}/{len(steps)} ({steps[state['step']]}%), "
        f"{state['evaluations']} evaluations, {state['failures']} failed "
        f"({state['consecutive_failures']} in a row)"
    )
    if state.get("last"):
        print_table(
            ["GATE", "VERDICT", "WHY"],
            [[g["gate"], g["verdict"], g["reason"]] for g in state["last"]["gates"]],
        )
    return 0


def _rollout_steer(args: argparse.Namespace, _: object) -> int:
    return post_reason(args, f"/admin/models/{args.name}/rollout/{args.action}")
