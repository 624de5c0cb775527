"""The console's pending changes of a protected model: the page that shows one, and the
approve and reject actions, through the same service as `/admin/pending`
(`gateway.approvals`), audited with the session's token as actor."""

from __future__ import annotations

from urllib.parse import quote

from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.status_codes import HTTP_200_OK

from gateway import approvals
from gateway.ui.access import admin_only
from gateway.ui.console import Asked, Console, Page
from gateway.ui.forms import reason_of
from gateway.ui.views import PendingPanel, pending_panel
from registry.deployment import Deployment
from registry.names import validate_model_name


@get("/models/{name:str}/pending", name="console-pending")
async def pending_page(console: Asked, name: FromPath[str]) -> Page:
    """A model's protection and its change awaiting approval; for an admin, the forms that
    approve or reject it."""
    view = await _panel(console, name)
    _, live = await console.region("pending_body.html", _pending_url(name), view)
    return console.page("pending.html", "models", live=live, name=name)


@get("/models/{name:str}/pending/live", name="console-pending-live")
async def pending_live(console: Asked, name: FromPath[str], seen: FromQuery[str] = "") -> Page:
    """The pending page's live region."""
    view = await _panel(console, name)
    return await console.fragment("pending_body.html", _pending_url(name), view, seen)


@post(
    "/pending/{change_id:str}/approve",
    guards=[admin_only],
    name="console-approve",
    status_code=HTTP_200_OK,
)
async def approve(console: Asked, change_id: FromPath[str]) -> Page:
    """Apply the change (as `POST /admin/pending/{id}/approve`): refused (403) to the admin
    who asked for it; a reason is required."""
    reason = await reason_of(console.request, required=True)
    deployment = await approvals.approve(console.manager, change_id, console.session.actor, reason)
    return await _decided(console, deployment)


@post(
    "/pending/{change_id:str}/reject",
    guards=[admin_only],
    name="console-reject",
    status_code=HTTP_200_OK,
)
async def reject(console: Asked, change_id: FromPath[str]) -> Page:
    """Refuse the change (as `POST /admin/pending/{id}/reject`); its requester may withdraw
    it so. A reason is required."""
    reason = await reason_of(console.request, required=True)
    deployment = await approvals.reject(console.manager, change_id, console.session.actor, reason)
    return await _decided(console, deployment)


async def _panel(console: Console, name: str) -> PendingPanel:
    validate_model_name(name)
    return await pending_panel(console.manager, name)


def _pending_url(name: str) -> str:
    return f"/ui/models/{quote(name)}/pending/live"


async def _decided(console: Console, deployment: Deployment) -> Page:
    """After a decision: htmx gets the pending region as it is now; a plain form goes back
    to the page."""
    name = deployment.model
    if "hx-request" not in console.request.headers:
        return Redirect(f"/ui/models/{quote(name)}/pending", status_code=303)
    view = await _panel(console, name)
    return await console.fragment("pending_body.html", _pending_url(name), view, seen="")
