"""Giving a store back the control state it lost (a Redis restarted without persistence).

Every gateway keeps what it last read of the shared state: the deployments (rollout state
included) and the head of the audit chain. When it finds that the store no longer holds the
state it knew, it writes back what the store lacks, as one audited change. Deployments are
ordered by revision, the same rule by which every gateway applies changes: a known
deployment replaces a stored one unless the stored one is newer (or the very same), so
defaults written by a gateway started after the loss (revision 1) never win over the policy
in force before it, and a later change made on the store (a higher revision) is kept. Each
deployment written back takes a revision above both, so that every gateway applies it,
whatever it serves, and none holds a revision above the store's (it would ignore the next
change).

The audit log: when the store's log is empty, the restoration entry continues the chain the
gateway knew (its sequence number and hash), so numbering goes on and `verify_log` checks
the log from there; the entries before it are gone from the store (only their head is
known). When the store's log already has entries (a gateway started afresh wrote first),
the restoration is chained onto them and records the head of the chain that was lost.
Nothing else can be given back: no gateway keeps the entries themselves, only the head.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from registry.audit import RESTORED, AuditEntry, AuditHead, next_entry
from registry.deployment import Deployment

ACTOR = "controller"  # restorations are automatic, as the rollout controller's decisions


class Restoration(msgspec.Struct, frozen=True, kw_only=True):
    """What to write back: deployments, the revisions they replace, and the audit entry."""

    deployments: dict[str, Deployment]  # to store, their revisions past everyone's
    replaces: dict[str, int]  # the stored revision each replaces (0: none stored)
    entry: AuditEntry


def plan_restoration(
    known: Mapping[str, Deployment],
    known_head: AuditHead,
    stored: Mapping[str, Deployment],
    stored_head: AuditHead,
    *,
    epochs: tuple[str | None, str],
    gateway: str,
) -> Restoration | None:
    """What a gateway that knew `known` and `known_head` must write back into a store that
    holds `stored` and `stored_head` (seq 0: an empty log); None when the store lacks
    nothing it knew. `epochs` are the store's lineage as this gateway knew it and as it
    will be after the restoration."""
    restored: dict[str, Deployment] = {}
    replaces: dict[str, int] = {}
    for model, deployment in known.items():
        current = stored.get(model)
        revision = current.revision if current is not None else 0  # 0: none stored
        if current == deployment or revision > deployment.revision:
            continue
        replaces[model] = revision
        restored[model] = msgspec.structs.replace(
            deployment, revision=max(deployment.revision, revision) + 1
        )
    if not restored and known_head.seq <= stored_head.seq:
        return None
    known_epoch, epoch = epochs
    entry = next_entry(
        known_head if stored_head.seq == 0 else stored_head,
        actor=ACTOR,
        action=RESTORED,
        model="",  # every model's state: shown with each model's audit entries
        reason=f"Redis lost its state; restored from gateway {gateway}",
        before={"epoch": known_epoch, "audit_head": known_head},
        after={"epoch": epoch, "deployments": restored},
    )
    return Restoration(deployments=restored, replaces=replaces, entry=entry)
