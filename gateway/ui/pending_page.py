"""The console's view of protected models' pending changes: what waits for a second admin,
and how the latest change was decided. Read through `gateway.approvals`, as
`GET /admin/pending` reads them."""

from __future__ import annotations

import msgspec

from gateway import approvals
from gateway.approvals import PendingReport
from gateway.deployments import DeploymentManager
from gateway.ui import words
from registry.deployment import ApprovalStatus, PendingChange


class PendingView(msgspec.Struct, frozen=True, kw_only=True):
    """A change awaiting a second admin's approval."""

    id: str
    model: str
    action: str  # the act held: "deployment.promote", "rollout.promote", ...
    summary: str  # what approval would change, in words
    requested_by: str
    reason: str
    requested: str  # "2024-05-01 12:00:05 UTC"
    expires: str
    stale: bool  # the deployment changed since the request: approval would be refused


class DecisionView(msgspec.Struct, frozen=True, kw_only=True):
    """How the latest pending change of a model ended."""

    id: str
    action: str
    status: ApprovalStatus  # "approved", "rejected" or "expired"
    status_class: str
    requested_by: str
    decided_by: str
    decided: str
    reason: str  # the decision's


class PendingPanel(msgspec.Struct, frozen=True, kw_only=True):
    """One model's protection and its pending change, if any."""

    model: str
    protected: bool
    pending: PendingView | None
    last: DecisionView | None  # the latest decided change, while none is pending


async def pending_views(manager: DeploymentManager) -> dict[str, PendingView]:
    """Every model's pending change, by model (expired ones recorded first)."""
    reports = await approvals.pending(manager)
    return {report.change.model: pending_view(report) for report in reports}


async def pending_panel(manager: DeploymentManager, name: str) -> PendingPanel:
    """`name`'s protection and pending change.

    Raises:
        ModelNotFoundError: The model is not registered.
    """
    reports = await approvals.pending(manager, name)  # a model holds one at most
    deployment = await manager.get(name)
    change = deployment.approval
    return PendingPanel(
        model=name,
        protected=deployment.protected,
        pending=pending_view(reports[0]) if reports else None,
        last=_decision(change) if change is not None and change.status != "pending" else None,
    )


def pending_view(report: PendingReport) -> PendingView:
    """A pending change in words."""
    change = report.change
    return PendingView(
        id=change.id,
        model=change.model,
        action=change.action,
        summary=report.summary,
        requested_by=change.requested_by,
        reason=change.reason,
        requested=words.moment(change.created_at),
        expires=words.moment(change.expires_at),
        stale=report.stale,
    )


def _decision(change: PendingChange) -> DecisionView:
    return DecisionView(
        id=change.id,
        action=change.action,
        status=change.status,
        status_class="status-ok" if change.status == "approved" else "status-drift",
        requested_by=change.requested_by,
        decided_by=change.decided_by,
        decided=words.moment(change.decided_at),
        reason=change.decision_reason,
    )
