"""The admin API under `/admin`: deployments, audit, status and uploads, behind tokens."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, MultipartBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from gateway import scratch
from gateway.approvals_api import APPROVAL_ROUTES, answer
from gateway.auth import TokenGuard, actor_of
from gateway.dataplane import DataPlane
from gateway.deployments import DeploymentManager, DeploymentSpec
from gateway.error_docs import errors
from gateway.errors import BadRequestError, NotFoundError
from gateway.rollouts import RolloutController
from gateway.settings import Settings
from registry import Manifest, StoreUnavailableError
from registry.audit import AuditEntry, AuditLog, verify_log
from registry.deployment import Deployment
from registry.manifest import parse_pairs
from registry.names import validate_model_name
from registry.rollout import RolloutConfig, RolloutState

Manager = NamedDependency[DeploymentManager]

STORE_PROBE_SECONDS = 2.0  # what /admin/status waits for the model store


class Reason(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Why an operator acts; recorded in the audit log."""

    reason: str = ""


class AuditReport(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /admin/audit`: entries, and whether the chain is intact."""

    entries: list[AuditEntry]  # every readable entry (of the model asked for, and of all)
    intact: bool
    first_invalid: int | None  # position of the first modified, removed or unreadable entry
    problem: str | None = None  # what is wrong with the log, naming the file or key
    restored_after: int = 0  # the log begins with a restoration: entries up to this seq are lost


@dataclass
class VersionUpload:
    """A new version: the ONNX file, its reference data, and the CLI's options."""

    model: UploadFile
    reference: UploadFile
    target: str | None = None
    description: str = ""
    owner: str = ""
    tags: str = ""  # K=V,K=V
    metrics: str = ""  # K=V,K=V with numeric V


@get(
    "/models/{name:str}/deployment",
    summary="Read a model's deployment",
    responses=errors(404, 503),
)
async def read_deployment(manager: Manager, name: FromPath[str]) -> Deployment:
    """The traffic policy in force: stable, canary and weight, shadows."""
    return await manager.get(name)


@put(
    "/models/{name:str}/deployment",
    summary="Replace a model's deployment",
    responses=errors(404, 409, 413, 503, 507),
)
async def write_deployment(
    request: Request[Any, Any, Any],
    manager: Manager,
    name: FromPath[str],
    data: JSONBody[DeploymentSpec],
) -> Response[Deployment]:
    """Validated (400/409), audited, applied before the response; routed versions are loaded
    before any request meets them. A protected model's new stable version waits for
    approval (202)."""
    return answer(await manager.set(name, data, actor_of(request)))


@post(
    "/models/{name:str}/promote",
    summary="Promote the canary",
    status_code=HTTP_200_OK,
    responses=errors(404, 409, 413, 503, 507),
)
async def promote(
    request: Request[Any, Any, Any],
    manager: Manager,
    name: FromPath[str],
    data: JSONBody[Reason | None] = None,
) -> Response[Deployment]:
    """The canary becomes the stable version (of a protected model, once approved: 202)."""
    return answer(await manager.promote(name, actor_of(request), data.reason if data else ""))


@post(
    "/models/{name:str}/rollback",
    summary="Roll the canary back",
    status_code=HTTP_200_OK,
    responses=errors(404, 409, 413, 503, 507),
)
async def rollback(
    request: Request[Any, Any, Any],
    manager: Manager,
    name: FromPath[str],
    data: JSONBody[Reason | None] = None,
) -> Deployment:
    """The canary's weight drops to 0 at once."""
    return await manager.rollback(name, actor_of(request), data.reason if data else "")


@post(
    "/models/{name:str}/versions",
    summary="Register a version by upload",
    status_code=HTTP_201_CREATED,
    responses=errors(413, 503, 507),
)
async def upload_version(
    request: Request[Any, Any, Any],
    manager: Manager,
    settings: NamedDependency[Settings],
    name: FromPath[str],
    data: MultipartBody[VersionUpload],
) -> Manifest:
    """Same result as `driftgate models register`: the new version's manifest."""
    validate_model_name(name)
    try:
        tags = parse_pairs(_items(data.tags), str)
        metrics = parse_pairs(_items(data.metrics), float)
    except ValueError as exc:
        raise BadRequestError(f"tags or metrics: {exc}") from exc
    suffix = Path(data.reference.filename or "").suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise BadRequestError("the reference upload must be a .csv or .parquet file")
    # Under the data directory, named by this process: a crash's leftovers (training data)
    # are removed at the next start (`sweep_uploads`).
    with scratch.directory(UPLOAD_PREFIX, settings.upload_path) as directory:
        model_path, reference_path = directory / "model.onnx", directory / f"ref{suffix}"
        await asyncio.to_thread(_save, data.model, model_path)
        await asyncio.to_thread(_save, data.reference, reference_path)
        return await manager.register(
            name,
            model_path,
            reference_path,
            actor=actor_of(request),
            target=data.target or None,
            description=data.description,
            owner=data.owner,
            tags=tags,
            metrics=metrics,
        )


class RolloutStart(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /admin/models/{name}/rollout`: which version, how, and why."""

    version: int
    config: RolloutConfig = RolloutConfig()
    reason: str = ""


@post(
    "/models/{name:str}/rollout",
    summary="Start a rollout",
    status_code=HTTP_201_CREATED,
    responses=errors(404, 409, 413, 503, 507),
)
async def start_rollout(
    request: Request[Any, Any, Any],
    controller: NamedDependency[RolloutController],
    name: FromPath[str],
    data: JSONBody[RolloutStart],
) -> Deployment:
    """The version becomes the canary at the first step's weight; the controller judges it
    every interval and steps it up, promotes it, or rolls it back."""
    return await controller.begin(name, data.version, data.config, actor_of(request), data.reason)


@get("/models/{name:str}/rollout", summary="A rollout's state", responses=errors(404, 503))
async def rollout_status(manager: Manager, name: FromPath[str]) -> RolloutState:
    """Status, step, failures, and the last evaluation with every gate's evidence."""
    deployment = await manager.get(name)
    if deployment.rollout is None:
        raise NotFoundError(f"{name} has had no rollout")
    return deployment.rollout


@post(
    "/models/{name:str}/rollout/{action:str}",
    summary="Pause, resume or abort a rollout",
    status_code=HTTP_200_OK,
    responses=errors(404, 409, 413, 503, 507),
)
async def steer_rollout(
    request: Request[Any, Any, Any],
    controller: NamedDependency[RolloutController],
    name: FromPath[str],
    action: FromPath[str],
    data: JSONBody[Reason | None] = None,
) -> Deployment:
    """`pause` holds the weight, `resume` goes on, `abort` sends the canary no traffic."""
    if action not in ("pause", "resume", "abort"):
        raise NotFoundError(f"no rollout action {action!r}: use pause, resume or abort")
    return await controller.steer(name, action, actor_of(request), data.reason if data else "")


def audit_report(
    log: AuditLog, *, model: str | None = None, actor: str | None = None
) -> AuditReport:
    """The entries of `model` (and of no one model) by `actor`, oldest first, with the
    verdict on the whole chain (shared by `/admin/audit` and the console)."""
    verdict = verify_log(log)
    # Entries of no one model (a restoration of the whole state) concern every model.
    shown = [
        entry
        for entry in log.entries
        if (model is None or entry.model in (model, "")) and (actor is None or entry.actor == actor)
    ]
    return AuditReport(
        entries=shown,
        intact=verdict.problem is None,
        first_invalid=verdict.first_invalid,
        problem=verdict.problem,
        restored_after=verdict.restored_after,
    )


@get("/audit", summary="The audit log", responses=errors(503))
async def audit(
    manager: Manager, model: FromQuery[str | None] = None, actor: FromQuery[str | None] = None
) -> AuditReport:
    """Every change, oldest first, with the result of verifying the hash chain. A damaged
    log is reported (`intact: false`, and the `problem`), never an error of this call."""
    return audit_report(await manager.audit(), model=model, actor=actor)


@get("/status", summary="Gateway status")
async def status(
    manager: Manager,
    dataplane: NamedDependency[DataPlane],
    controller: NamedDependency[RolloutController],
) -> dict[str, Any]:
    """Versions loaded, deployments in force, state backend and model store health, shadow
    queue, and whether this process leads the rollout controller."""
    store_error = None
    try:  # a status must answer while the store does not: its probe gets two seconds
        await asyncio.wait_for(asyncio.to_thread(manager.registry.check), STORE_PROBE_SECONDS)
    except StoreUnavailableError as exc:
        store_error = str(exc)
    except TimeoutError:
        store_error = (
            f"the model store {manager.registry.location} did not answer within "
            f"{STORE_PROBE_SECONDS:g} s"
        )
    return {
        "registry": {
            "location": manager.registry.location,
            "reachable": store_error is None,
            "error": store_error,
        },
        "controller": {"leader": controller.leading, "pid": os.getpid()},
        "state_backend": {
            "kind": manager.state.kind,
            "healthy": manager.state.healthy,
            "error": str(error) if (error := manager.state.error) else None,
        },
        "loaded": [
            {
                "model": loaded.manifest.name,
                "version": loaded.manifest.version,
                "sha256": loaded.manifest.sha256,
            }
            for loaded in dataplane.repository.loaded()
        ],
        "deployments": msgspec.to_builtins(dict(manager.deployments())),
        "shadows": {
            "queued": dataplane.mirror.depth,
            "dropped": dataplane.mirror.dropped,
            "agreement": msgspec.to_builtins(dataplane.mirror.agreement.snapshot()),
        },
    }


UPLOAD_PREFIX = "driftgate-upload-"


def _save(upload: UploadFile, path: Path) -> None:
    """Copy an upload to `path` by blocks, never holding a second copy of it in memory."""
    upload.file.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


def sweep_uploads(settings: Settings) -> None:
    """Remove what uploads interrupted by a crash left (on start; live workers' are kept)."""
    scratch.sweep(UPLOAD_PREFIX, settings.upload_path)


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def admin_router(guard: TokenGuard, *, max_upload_bytes: int) -> Router:
    """The `/admin` routes, every one behind the token guard."""
    uploads = Router(
        path="/", route_handlers=[upload_version], request_max_body_size=max_upload_bytes
    )
    return Router(
        path="/admin",
        guards=[guard],
        tags=["admin"],
        security=[{"bearer": []}],
        route_handlers=[
            start_rollout,
            rollout_status,
            steer_rollout,
            read_deployment,
            write_deployment,
            promote,
            rollback,
            uploads,
            audit,
            status,
            *APPROVAL_ROUTES,
        ],
    )
