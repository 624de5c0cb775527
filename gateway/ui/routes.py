"""The console under `/ui`: its pages, the live fragments they poll, and its actions.

Handlers are thin: the views (`gateway.ui.views`, `gateway.ui.audit`) know the gateway,
the templates know HTML. Each page holds a live region that polls its fragment every few
seconds; the fragment answers 204 while its content is unchanged, so the browser only
redraws on a change. The actions call the same DeploymentManager and RolloutController
methods as `/admin`, audited with the session's token as actor.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Request, Router, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_200_OK

from gateway.deployments import DeploymentManager
from gateway.errors import BadRequestError, NotFoundError
from gateway.live_evidence import LiveEvidence
from gateway.rollouts import RolloutController
from gateway.tokens import Token
from gateway.ui.access import CONSOLE_ERRORS, ConsoleGuard, admin_only, session_of
from gateway.ui.audit import AuditView, audit_view
from gateway.ui.compare_routes import compare_page
from gateway.ui.console import LIVE_SECONDS, Asked, Console, Page
from gateway.ui.forms import MAX_REASON_CHARS, reason_of
from gateway.ui.headers import CONSOLE_POLICY, SecurityHeaders
from gateway.ui.login import login, login_page, logout
from gateway.ui.pending_routes import approve, pending_live, pending_page, reject
from gateway.ui.session import Sessions
from gateway.ui.views import RolloutView, VersionView, models_view, rollout_view, version_view
from monitor.drift import DriftMonitor
from registry.names import validate_model_name

# A version page of many features (hundreds of charts) asks less often: building and
# sending it costs more than a small page, and a change still shows within seconds. So
# does the audit page, which reads and verifies the whole log each time.
BIG_PAGE_FEATURES, BIG_PAGE_SECONDS = 50, 5
MAX_FILTER_CHARS = 200
MAX_FORM_BYTES = 64 * 1024  # a console form is a reason and a secret
STEERS = ("pause", "resume", "abort")
STATIC = Path(__file__).parent / "static"


# --- the models page ------------------------------------------------------------------


@get("/", name="console-models")
async def models_page(console: Asked) -> Page:
    """Every model: its deployment and versions, with provenance and drift."""
    view = await models_view(console.manager, console.monitor)
    _, live = await console.region("models_body.html", "/ui/live", view)
    return console.page("models.html", "models", live=live)


@get("/live", name="console-models-live")
async def models_live(console: Asked, seen: FromQuery[str] = "") -> Page:
    """The models page's live region (204 while unchanged since `seen`)."""
    view = await models_view(console.manager, console.monitor)
    return await console.fragment("models_body.html", "/ui/live", view, seen)


# --- the version page -----------------------------------------------------------------


@get("/models/{name:str}/versions/{version:int}", name="console-version")
async def version_page(console: Asked, name: FromPath[str], version: FromPath[int]) -> Page:
    """One version's drift: every feature and output, worst first."""
    view = await _version(console, name, version)
    url = _version_url(name, version)
    _, live = await console.region("version_body.html", url, view, every=_every(view))
    versions = await asyncio.to_thread(console.manager.registry.versions, name)
    others = [other for other in versions if other != version]  # to compare it with
    return console.page(
        "version.html", "models", live=live, name=name, version=version, others=others
    )


@get("/models/{name:str}/versions/{version:int}/live", name="console-version-live")
async def version_live(
    console: Asked, name: FromPath[str], version: FromPath[int], seen: FromQuery[str] = ""
) -> Page:
    """The version page's live region."""
    view = await _version(console, name, version)
    url = _version_url(name, version)
    return await console.fragment("version_body.html", url, view, seen, every=_every(view))


async def _version(console: Console, name: str, version: int) -> VersionView:
    validate_model_name(name)
    return await version_view(console.manager, console.monitor, name=name, version=version)


def _version_url(name: str, version: int) -> str:
    return f"/ui/models/{quote(name)}/versions/{version}/live"


def _every(view: VersionView) -> int:
    big = len(view.features) + len(view.outputs) > BIG_PAGE_FEATURES
    return BIG_PAGE_SECONDS if big else LIVE_SECONDS


# --- the rollout page -----------------------------------------------------------------


@get("/models/{name:str}/rollout", name="console-rollout")
async def rollout_page(console: Asked, name: FromPath[str]) -> Page:
    """A model's rollout: steps, evaluations, the canary against stable, and (for an admin)
    the buttons that steer it."""
    view = await _rollout(console, name)
    _, live = await console.region("rollout_body.html", _rollout_url(name), view)
    return console.page("rollout.html", "models", live=live, name=name, max_reason=MAX_REASON_CHARS)


@get("/models/{name:str}/rollout/live", name="console-rollout-live")
async def rollout_live(console: Asked, name: FromPath[str], seen: FromQuery[str] = "") -> Page:
    """The rollout page's live region."""
    view = await _rollout(console, name)
    return await console.fragment("rollout_body.html", _rollout_url(name), view, seen)


@post(
    "/models/{name:str}/rollout/{action:str}",
    guards=[admin_only],
    name="console-steer",
    status_code=HTTP_200_OK,
)
async def steer(console: Asked, name: FromPath[str], action: FromPath[str]) -> Page:
    """Pause, resume or abort the rollout (as `POST /admin/models/{m}/rollout/{action}`)."""
    validate_model_name(name)
    if action not in STEERS:
        raise NotFoundError(f"no rollout action {action!r}: use pause, resume or abort")
    reason = await reason_of(console.request, required=False) or f"{action} from the console"
    await console.controller.steer(name, action, console.session.actor, reason)
    return await _acted(console, name)


@post(
    "/models/{name:str}/promote",
    guards=[admin_only],
    name="console-promote",
    status_code=HTTP_200_OK,
)
async def promote(console: Asked, name: FromPath[str]) -> Page:
    """The canary becomes stable (as `POST /admin/models/{m}/promote`); a reason is required."""
    validate_model_name(name)
    reason = await reason_of(console.request, required=True)
    await console.manager.promote(name, console.session.actor, reason)
    return await _acted(console, name)


@post(
    "/models/{name:str}/rollback",
    guards=[admin_only],
    name="console-rollback",
    status_code=HTTP_200_OK,
)
async def rollback(console: Asked, name: FromPath[str]) -> Page:
    """The canary's weight drops to 0 (as `POST /admin/models/{m}/rollback`); a reason is
    required."""
    validate_model_name(name)
    reason = await reason_of(console.request, required=True)
    await console.manager.rollback(name, console.session.actor, reason)
    return await _acted(console, name)


async def _rollout(console: Console, name: str) -> RolloutView:
    validate_model_name(name)
    return await rollout_view(console.manager, console.monitor, console.controller, name=name)


def _rollout_url(name: str) -> str:
    return f"/ui/models/{quote(name)}/rollout/live"


async def _acted(console: Console, name: str) -> Page:
    """After an action: htmx gets the rollout's live region as it is now (or, for a model
    with no rollout, is sent to the models page); a plain form goes back to the page."""
    if "hx-request" not in console.request.headers:
        return Redirect(f"/ui/models/{quote(name)}/rollout", status_code=303)
    try:
        view = await _rollout(console, name)
    except NotFoundError:
        return console.redirect("/ui")
    return await console.fragment("rollout_body.html", _rollout_url(name), view, seen="")


# --- the audit page -------------------------------------------------------------------


@get("/audit", name="console-audit")
async def audit_page(
    console: Asked, model: FromQuery[str] = "", actor: FromQuery[str] = ""
) -> Page:
    """The hash-chained log, newest first, filtered by model and actor, with the verdict
    on the whole chain."""
    view = audit_view(await console.manager.audit(), model=_filter(model), actor=_filter(actor))
    url, query = "/ui/audit/live", _query(view)
    _, live = await console.region("audit_body.html", url, view, query, every=BIG_PAGE_SECONDS)
    return console.page("audit.html", "audit", live=live, view=view)


@get("/audit/live", name="console-audit-live")
async def audit_live(
    console: Asked,
    model: FromQuery[str] = "",
    actor: FromQuery[str] = "",
    seen: FromQuery[str] = "",
) -> Page:
    """The audit page's live region."""
    view = audit_view(await console.manager.audit(), model=_filter(model), actor=_filter(actor))
    url, query = "/ui/audit/live", _query(view)
    return await console.fragment("audit_body.html", url, view, seen, query, every=BIG_PAGE_SECONDS)


def _filter(value: str) -> str:
    if len(value) > MAX_FILTER_CHARS:
        raise BadRequestError(f"a filter is over {MAX_FILTER_CHARS} characters: shorten it")
    return value.strip()


def _query(view: AuditView) -> dict[str, str]:
    return {key: value for key in ("model", "actor") if (value := getattr(view, key))}


# --- the router -----------------------------------------------------------------------


def _provide_console(
    request: Request[Any, Any, Any],
    manager: NamedDependency[DeploymentManager],
    monitor: NamedDependency[DriftMonitor],
    controller: NamedDependency[RolloutController],
    evidence: NamedDependency[LiveEvidence],
) -> Console:
    return Console(
        request=request,
        session=session_of(request),
        manager=manager,
        monitor=monitor,
        controller=controller,
        evidence=evidence,
    )


def console_router(
    tokens: tuple[Token, ...], *, session_seconds: float, evidence: LiveEvidence
) -> Router:
    """The console under `/ui`: login, the pages behind a session, and the static files;
    the comparison page shows `evidence` of versions that served."""
    sessions = Sessions(tokens, session_seconds)
    pages = Router(
        path="/",
        guards=[ConsoleGuard(sessions)],
        dependencies={"console": Provide(_provide_console, sync_to_thread=False)},
        route_handlers=[
            models_page,
            models_live,
            version_page,
            version_live,
            rollout_page,
            rollout_live,
            steer,
            promote,
            rollback,
            compare_page,
            pending_page,
            pending_live,
            approve,
            reject,
            audit_page,
            audit_live,
            logout,
        ],
    )
    entrance = Router(path="/", route_handlers=[login_page, login])
    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        name="console-static",
        cache_control=CacheControlHeader(max_age=300),
        middleware=[SecurityHeaders(CONSOLE_POLICY)],
    )
    private = SecurityHeaders(CONSOLE_POLICY, no_store=True)  # pages show live state
    return Router(
        path="/ui",
        route_handlers=[
            Router(path="/", route_handlers=[pages, entrance], middleware=[private]),
            static,
        ],
        dependencies={
            "sessions": Provide(lambda: sessions, use_cache=True, sync_to_thread=False),
            "evidence": Provide(lambda: evidence, use_cache=True, sync_to_thread=False),
        },
        exception_handlers=CONSOLE_ERRORS,  # type: ignore[arg-type]
        request_max_body_size=MAX_FORM_BYTES,
        include_in_schema=False,
    )
