"""`driftgate traffic protect | unprotect | pending | approve | reject`: the two-person rule
of protected models, over the admin API."""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec

from gateway.operator import admin_client, print_deployment
from gateway.tables import print_table


def add_approval_commands(traffic: Any, client: argparse.ArgumentParser) -> None:
    """Add the approval actions to `traffic`'s subcommands (`client`: --url, --token, --json)."""
    for action, text in [
        ("protect", "changes of the stable version need a second admin's approval"),
        ("unprotect", "ask to lift the protection (itself needs approval)"),
    ]:
        parser = traffic.add_parser(action, parents=[client], help=text)
        parser.add_argument("name")
        parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
        parser.set_defaults(command=_protect, action=action)
    listed = traffic.add_parser("pending", parents=[client], help="changes awaiting approval")
    listed.add_argument("name", nargs="?", help="only this model's")
    listed.set_defaults(command=_pending)
    approve = traffic.add_parser("approve", parents=[client], help="apply a pending change")
    approve.add_argument("id")
    approve.add_argument("--reason", default="", help="why (recorded in the audit log)")
    approve.set_defaults(command=_decide, action="approve")
    reject = traffic.add_parser("reject", parents=[client], help="refuse a pending change")
    reject.add_argument("id")
    reject.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    reject.set_defaults(command=_decide, action="reject")


def _protect(args: argparse.Namespace, _: object) -> int:
    path = f"/admin/models/{args.name}/{args.action}"
    deployment = admin_client(args).request("POST", path, {"reason": args.reason})
    print_deployment(deployment, args.json)
    return 0


def _pending(args: argparse.Namespace, _: object) -> int:
    path = "/admin/pending" + (f"?model={args.name}" if args.name else "")
    reports = admin_client(args).request("GET", path)
    if args.json:
        print(msgspec.json.encode(reports).decode())
        return 0
    print_table(
        ["ID", "MODEL", "CHANGE", "ASKED BY", "EXPIRES", "REASON"],
        [
            [
                report["change"]["id"],
                report["change"]["model"],
                report["summary"] + (" (stale)" if report["stale"] else ""),
                report["change"]["requested_by"],
                time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report["change"]["expires_at"])),
                report["change"]["reason"],
            ]
            for report in reports
        ],
    )
    return 0


def _decide(args: argparse.Namespace, _: object) -> int:
    path = f"/admin/pending/{args.id}/{args.action}"
    deployment = admin_client(args).request("POST", path, {"reason": args.reason})
    print_deployment(deployment, args.json)
    return 0
