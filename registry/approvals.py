"""The two-person rule of protected models: which changes wait for a second admin, and how
a pending change is requested, decided and expired.

Pure functions over `Deployment` (no I/O, no clock of their own): the gateway commits what
they return through the state backend's compare-and-set, so a request, a decision or an
expiry lands exactly once, with its audit entry, on every replica.

A model holds at most one pending change (`Deployment.approval`); a new request supersedes
the one waiting (the audit entry records both). A canary's rollback and every other change
that leaves the stable version alone apply at once: only the stable version, and the
protection itself, wait for approval.
"""

from __future__ import annotations

import time
import uuid

import msgspec

from registry.deployment import ApprovalStatus, Deployment, PendingChange
from registry.errors import RegistryError

APPROVAL = "approval."  # the prefix of the actions deciding pending changes: never held
CONTROLLER = "controller"  # the rollout controller's actor: it asks, it never approves


class ApprovalError(RegistryError):
    """A decision on a pending change that cannot be made; `status` is its HTTP status."""

    status = 409


class PendingNotFoundError(ApprovalError):
    """No pending change has this id (never asked, or superseded)."""

    status = 404


class SelfApprovalError(ApprovalError):
    """The requester, or the controller, tried to approve."""

    status = 403


class PendingExpiredError(ApprovalError):
    """The pending change expired before its decision."""

    status = 410


class MissingReasonError(ApprovalError):
    """A rejection names no reason."""

    status = 400


class StaleChangeError(ApprovalError):
    """The deployment changed since the request: approving would apply it to another state."""

    status = 409


def needs_approval(current: Deployment, proposed: Deployment) -> bool:
    """Whether `proposed` must wait for a second admin: it changes a protected model's
    stable version, or lifts its protection."""
    return current.protected and (proposed.stable != current.stable or not proposed.protected)


def request(
    current: Deployment,
    proposed: Deployment,
    *,
    action: str,
    actor: str,
    reason: str,
    now: float,
    ttl: float,
) -> Deployment:
    """`current` with `proposed` recorded as its pending change (at `proposed.revision`,
    the revision the request is committed at), instead of `proposed` itself.

    A rollout's promotion pauses the rollout at its last step: the canary keeps its weight,
    and the controller evaluates nothing more until the change is decided.
    """
    pending = PendingChange(
        id=uuid.uuid4().hex[:12],
        model=current.model,
        action=action,
        proposed=msgspec.structs.replace(proposed, approval=None, revision=0),
        requested_by=actor,
        reason=reason,
        created_at=now,
        expires_at=now + ttl,
        revision=proposed.revision,
    )
    held = msgspec.structs.replace(current, approval=pending, revision=proposed.revision)
    rollout = proposed.rollout
    if rollout is not None and rollout.status == "promoted" and current.rollout is not None:
        held = msgspec.structs.replace(
            held, rollout=msgspec.structs.replace(rollout, status="paused")
        )
    return held


def pending_change(current: Deployment, change_id: str) -> PendingChange:
    """The pending change `change_id` of `current`, whatever its status.

    Raises:
        PendingNotFoundError: `current` holds no change of that id.
    """
    approval = current.approval
    if approval is None or approval.id != change_id:
        raise PendingNotFoundError(
            f"model {current.model!r} has no pending change {change_id!r} (decided and "
            "replaced, or superseded by a newer request: see driftgate traffic pending)"
        )
    return approval


def check_open(approval: PendingChange, now: float) -> None:
    """Refuse a decision on a change already decided or past its expiry.

    Raises:
        PendingExpiredError: it expired (recorded, or due to be).
        ApprovalError: it was approved or rejected.
    """
    if approval.status == "expired" or (
        approval.status == "pending" and now >= approval.expires_at
    ):
        raise PendingExpiredError(
            f"change {approval.id} expired at {_moment(approval.expires_at)} without a "
            "decision; ask for it again"
        )
    if approval.status != "pending":
        raise ApprovalError(
            f"change {approval.id} was already {approval.status} by {approval.decided_by}"
        )


def approve(
    current: Deployment, change_id: str, *, actor: str, reason: str, now: float
) -> Deployment:
    """The deployment `current`'s pending change puts in force, its approval recorded.

    Raises:
        PendingNotFoundError, PendingExpiredError, ApprovalError: see `pending_change` and
            `check_open`.
        SelfApprovalError: `actor` asked for the change, or is the controller.
        StaleChangeError: the deployment changed since the request.
    """
    approval = pending_change(current, change_id)
    check_open(approval, now)
    if actor == approval.requested_by:
        raise SelfApprovalError(
            f"{actor} asked for change {change_id}: a second admin must approve it"
        )
    if actor == CONTROLLER:
        raise SelfApprovalError("the controller cannot approve changes: an admin must")
    if current.revision != approval.revision:
        raise StaleChangeError(
            f"the deployment of {current.model!r} changed since change {change_id} was asked "
            f"for (revision {approval.revision}, now {current.revision}): it was not applied "
            "and stays pending until it is rejected or expires; ask for it again"
        )
    decided = _decided(approval, "approved", actor, reason, now)
    return msgspec.structs.replace(approval.proposed, approval=decided)


def reject(
    current: Deployment, change_id: str, *, actor: str, reason: str, now: float
) -> Deployment:
    """`current` with its pending change rejected; the requester may reject their own.

    Raises:
        MissingReasonError: no reason is given.
        PendingNotFoundError, PendingExpiredError, ApprovalError: see `check_open`.
    """
    require_reason(reason)
    approval = pending_change(current, change_id)
    check_open(approval, now)
    return msgspec.structs.replace(
        current, approval=_decided(approval, "rejected", actor, reason, now)
    )


def require_reason(reason: str) -> None:
    """Refuse a rejection that names no reason (`MissingReasonError`)."""
    if not reason.strip():
        raise MissingReasonError("a rejection needs a reason (--reason)")


def expire(current: Deployment, change_id: str, *, now: float) -> Deployment:
    """`current` with its pending change recorded as expired.

    Raises:
        PendingNotFoundError: the change is gone, or ApprovalError: it is decided or not
            due yet (another process expired or decided it first).
    """
    approval = pending_change(current, change_id)
    if approval.status != "pending" or now < approval.expires_at:
        raise ApprovalError(f"change {change_id} is {approval.status}, not due to expire")
    return msgspec.structs.replace(
        current,
        approval=_decided(approval, "expired", CONTROLLER, "no decision in time", now),
    )


def is_due(deployment: Deployment, now: float) -> bool:
    """Whether `deployment` holds a pending change past its expiry."""
    approval = deployment.approval
    return approval is not None and approval.status == "pending" and now >= approval.expires_at


def _decided(
    approval: PendingChange, status: ApprovalStatus, actor: str, reason: str, now: float
) -> PendingChange:
    return msgspec.structs.replace(
        approval, status=status, decided_by=actor, decided_at=now, decision_reason=reason
    )


def _moment(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
