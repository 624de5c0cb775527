"""Pending changes under `/admin`: thin handlers over `gateway.approvals`.

GET  /admin/pending[?model=M]             the changes awaiting approval
POST /admin/pending/{id}/approve          apply one (a second admin, not the controller)
POST /admin/pending/{id}/reject           refuse one ({"reason": ...} required)
POST /admin/models/{name}/protect         changes of the stable version need approval
POST /admin/models/{name}/unprotect       asks for approval to lift the protection
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from gateway import approvals
from gateway.approvals import PendingReport
from gateway.auth import actor_of
from gateway.deployments import DeploymentManager
from gateway.error_docs import errors
from registry.deployment import Deployment

Manager = NamedDependency[DeploymentManager]


class Decision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Why an admin decides; recorded in the audit log (required to reject)."""

    reason: str = ""


def answer(deployment: Deployment) -> Response[Deployment]:
    """The deployment after a change: 200 when it is in force, 202 when the change was held
    as a pending change for a second admin to approve (`approval` says which)."""
    held = deployment.approval
    accepted = (
        held is not None and held.status == "pending" and held.revision == deployment.revision
    )
    return Response(deployment, status_code=HTTP_202_ACCEPTED if accepted else HTTP_200_OK)


@get("/pending", summary="Changes awaiting approval", responses=errors(404, 503))
async def list_pending(
    manager: Manager, model: FromQuery[str | None] = None
) -> list[PendingReport]:
    """Pending changes of protected models (of `model`, or all), oldest first; `stale` ones
    were asked for on a deployment that has changed since, and approving them is refused."""
    return await approvals.pending(manager, model)


@post(
    "/pending/{change_id:str}/approve",
    summary="Approve a pending change",
    status_code=HTTP_200_OK,
    responses=errors(404, 409, 410, 413, 503, 507),
)
async def approve(
    request: Request[Any, Any, Any],
    manager: Manager,
    change_id: FromPath[str],
    data: JSONBody[Decision | None] = None,
) -> Deployment:
    """Applies the change with compare-and-set on the revision it was asked for at: 403 to
    its requester and to the controller, 409 when the deployment changed meanwhile, 410
    once it expired."""
    return await approvals.approve(
        manager, change_id, actor_of(request), data.reason if data else ""
    )


@post(
    "/pending/{change_id:str}/reject",
    summary="Reject a pending change",
    status_code=HTTP_200_OK,
    responses=errors(404, 409, 410, 413, 503, 507),
)
async def reject(
    request: Request[Any, Any, Any],
    manager: Manager,
    change_id: FromPath[str],
    data: JSONBody[Decision | None] = None,
) -> Deployment:
    """Refuses the change (400 without a reason); its requester may withdraw it so."""
    return await approvals.reject(
        manager, change_id, actor_of(request), data.reason if data else ""
    )


@post(
    "/models/{name:str}/protect",
    summary="Protect a model",
    status_code=HTTP_200_OK,
    responses=errors(404, 409, 413, 503, 507),
)
async def protect(
    request: Request[Any, Any, Any],
    manager: Manager,
    name: FromPath[str],
    data: JSONBody[Decision | None] = None,
) -> Deployment:
    """From now on a change of its stable version waits for a second admin's approval."""
    return await approvals.protect(
        manager, name, True, actor_of(request), data.reason if data else ""
    )


@post(
    "/models/{name:str}/unprotect",
    summary="Lift a model's protection",
    status_code=HTTP_202_ACCEPTED,
    responses=errors(404, 409, 413, 503, 507),
)
async def unprotect(
    request: Request[Any, Any, Any],
    manager: Manager,
    name: FromPath[str],
    data: JSONBody[Decision | None] = None,
) -> Response[Deployment]:
    """Itself a pending change (202): one admin alone cannot lift the rule."""
    deployment = await approvals.protect(
        manager, name, False, actor_of(request), data.reason if data else ""
    )
    return answer(deployment)


APPROVAL_ROUTES = [list_pending, approve, reject, protect, unprotect]
