"""Pending changes of protected models, knowing no HTTP: protect, list, approve, reject and
expire, each one audited compare-and-set step through the deployment manager.

The rules are `registry.approvals`; the manager holds a protected model's change of its
stable version as pending (`DeploymentManager.change`). Expiry is recorded by whichever
process notices first (the controller's leader every round, any process before it lists or
decides): the compare-and-set on the deployment's revision lets exactly one record it.
"""

from __future__ import annotations

import logging
import time

import msgspec

from gateway.deployments import DeploymentManager
from registry import approvals
from registry.approvals import APPROVAL, CONTROLLER, ApprovalError, PendingNotFoundError
from registry.deployment import Deployment, PendingChange, PolicyConflictError, describe_change
from registry.state import RevisionConflictError, StateUnavailableError

logger = logging.getLogger(__name__)


class PendingReport(msgspec.Struct, frozen=True, kw_only=True):
    """A change awaiting approval, as `GET /admin/pending` lists it."""

    change: PendingChange
    summary: str  # what approval would change, in words
    stale: bool  # the deployment changed since the request: approval would be refused


async def protect(
    manager: DeploymentManager, model: str, protected: bool, actor: str, reason: str = ""
) -> Deployment:
    """Mark `model` protected (at once) or lift its protection (itself a pending change:
    one admin alone must not be able to lift the rule and then change the stable version)."""

    def edit(current: Deployment) -> Deployment:
        if current.protected == protected:
            raise PolicyConflictError(
                f"model {model!r} is {'already' if protected else 'not'} protected"
            )
        return msgspec.structs.replace(current, protected=protected)

    action = "deployment.protect" if protected else "deployment.unprotect"
    return await manager.change(model, action, actor, reason, edit)


async def pending(manager: DeploymentManager, model: str | None = None) -> list[PendingReport]:
    """The changes awaiting approval (of `model`, or of every model), oldest first."""
    if model is not None:
        await manager.get(model)  # 404 for a model that is not registered
    await expire_due(manager)
    reports = []
    for name, deployment in manager.deployments().items():
        change = deployment.approval
        if change is None or change.status != "pending" or model not in (None, name):
            continue
        if approvals.is_due(deployment, time.time()):
            continue  # expired; recorded by another process whose change is on its way here
        current = msgspec.structs.replace(deployment, approval=None)
        reports.append(
            PendingReport(
                change=change,
                summary=describe_change(current, change.proposed),
                stale=deployment.revision != change.revision,
            )
        )
    return sorted(reports, key=lambda report: report.change.created_at)


async def approve(
    manager: DeploymentManager, change_id: str, actor: str, reason: str = ""
) -> Deployment:
    """Apply the pending change `change_id` as `actor` approves it (refused to the one who
    asked and to the controller, and once the deployment changed since the request)."""
    await expire_due(manager)
    model = _model_of(manager, change_id)

    def edit(current: Deployment) -> Deployment:
        return approvals.approve(current, change_id, actor=actor, reason=reason, now=time.time())

    return await manager.change(model, f"{APPROVAL}approve", actor, reason, edit)


async def reject(manager: DeploymentManager, change_id: str, actor: str, reason: str) -> Deployment:
    """Refuse the pending change `change_id` (its requester may withdraw it so too)."""
    approvals.require_reason(reason)  # before the id is looked up: 400 before 404
    await expire_due(manager)
    model = _model_of(manager, change_id)

    def edit(current: Deployment) -> Deployment:
        return approvals.reject(current, change_id, actor=actor, reason=reason, now=time.time())

    return await manager.change(model, f"{APPROVAL}reject", actor, reason, edit)


async def expire_due(manager: DeploymentManager, now: float | None = None) -> list[str]:
    """Record the expiry of every pending change past its time; returns their ids (those
    this process recorded: another may have recorded some first)."""
    now = time.time() if now is None else now
    expired = []
    for model, deployment in list(manager.deployments().items()):
        if not approvals.is_due(deployment, now):
            continue
        change = deployment.approval
        assert change is not None
        reason = f"change {change.id} asked by {change.requested_by} was not decided in time"

        def edit(current: Deployment, change_id: str = change.id) -> Deployment:
            return approvals.expire(current, change_id, now=now)

        try:
            await manager.change(model, f"{APPROVAL}expire", CONTROLLER, reason, edit)
        except (ApprovalError, RevisionConflictError):
            continue  # another process recorded it (or a decision) first
        except StateUnavailableError as exc:  # recorded by the next look once it answers
            logger.warning("cannot record the expiry of change %s: %s", change.id, exc)
            continue
        expired.append(change.id)
    return expired


def _model_of(manager: DeploymentManager, change_id: str) -> str:
    """The model whose deployment holds the change `change_id`, decided or not."""
    for model, deployment in manager.deployments().items():
        if deployment.approval is not None and deployment.approval.id == change_id:
            return model
    raise PendingNotFoundError(
        f"no pending change {change_id!r} (superseded by a newer request, or never asked "
        "for: see driftgate traffic pending)"
    )


__all__ = ["PendingReport", "approve", "expire_due", "pending", "protect", "reject"]
