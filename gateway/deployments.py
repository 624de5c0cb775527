"""The control plane's core: reading, changing and applying deployments, knowing no HTTP.

Every change is validated, committed with its audit entry through the state backend, and
applied by loading the versions it routes to *before* the router sees them; versions no
longer routed are released afterwards. Changes made by other workers arrive through the
backend's listener and are applied the same way.

An operator's change that routes to a version which cannot be loaded is refused. A stored
deployment (at startup, or from another worker) is applied whatever the state of its
versions: a damaged one answers its own calls with 503 (see `gateway.repository`), and
every other version and model keeps serving. Only while the registry's object store
cannot be reached is a change from another worker held back (and tried again), so that the
versions this replica has loaded keep serving instead of ones it cannot load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import NotFoundError, ServiceUnavailableError
from gateway.repository import ModelRepository
from gateway.routing import Policy, Router
from registry import Manifest, ModelNotFoundError, ModelRegistry, StoreUnavailableError
from registry.approvals import APPROVAL, needs_approval, request
from registry.audit import AuditEntry, AuditLog
from registry.deployment import (
    Canary,
    Deployment,
    PolicyConflictError,
    PolicyError,
    Shadow,
    check_policy,
    describe_change,
)
from registry.state import Change, RevisionConflictError, StateBackend, StateUnavailableError

logger = logging.getLogger(__name__)
APPLY_RETRY_SECONDS = 5.0
CONTROLLER = "controller"


class DeploymentSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an operator asks for; the manager turns it into the next Deployment."""

    stable: int
    canary: Canary | None = None
    shadows: tuple[Shadow, ...] = ()
    reason: str = ""


class DeploymentManager:
    """Owns the deployments of every model: validates, commits, applies."""

    def __init__(
        self,
        registry: ModelRegistry,
        repository: ModelRepository,
        router: Router,
        state: StateBackend,
        *,
        on_commit: Callable[[Change], None] | None = None,
        approval_ttl: float = 24 * 3600.0,
    ) -> None:
        """`on_commit` hears of every change this process commits (for metrics);
        `approval_ttl`: seconds a protected model's change waits for its approval."""
        self.registry = registry
        self._approval_ttl = approval_ttl
        self.state = state
        self._on_commit = on_commit
        self._repository = repository
        self._router = router
        self._locks: dict[str, asyncio.Lock] = {}
        self._deferred: dict[str, Deployment] = {}
        self._retries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Apply the stored deployments and give every registered model one."""
        await self.state.start(self._on_change)
        try:
            names = await asyncio.to_thread(self.registry.models)
        except StoreUnavailableError as exc:
            # The stored deployments are in force; models without one get theirs on their
            # first call once the store answers.
            logger.error("%s; serving the stored deployments", exc)
            names = []
        for name in names:
            try:
                await self.ensure(name)
            except Exception:  # one model's trouble must not keep the others from serving
                logger.exception("cannot deploy %s; its calls will try again", name)

    async def ensure(self, model: str) -> Deployment:
        """The deployment in force for `model`, creating the default one (its latest
        version, stable) the first time a registered model is served."""
        if (policy := self._router.policy(model)) is not None:
            return policy.deployment
        async with self._lock(model):
            if (policy := self._router.policy(model)) is not None:
                return policy.deployment
            try:
                latest = await asyncio.to_thread(self.registry.latest_version, model)
            except (ModelNotFoundError, ValueError) as exc:
                raise NotFoundError(str(exc)) from exc
            if latest == 0:
                raise NotFoundError(f"model {model!r} is not registered")
            deployment = Deployment(model=model, stable=latest, revision=1)
            reason = "first served: its latest version is stable"
            actor = CONTROLLER
            try:
                await self._commit(
                    Change(
                        model=model,
                        action="deployment.init",
                        actor=actor,
                        reason=reason,
                        expected_revision=0,
                        deployment=deployment,
                        after=deployment,
                    )
                )
            except RevisionConflictError:
                stored = (await self.state.deployments()).get(model)
                deployment = stored or deployment
                actor = reason = ""  # another process's, applied as stored
            except StateUnavailableError:
                logger.warning("state backend down: serving %s v%d unrecorded", model, latest)
            await self._apply(deployment, actor=actor, reason=reason)
            return deployment

    async def get(self, model: str) -> Deployment:
        """The deployment in force for `model`."""
        return await self.ensure(model)

    async def set(self, model: str, spec: DeploymentSpec, actor: str) -> Deployment:
        """Replace the policy of `model` (validated, audited, applied before returning)."""

        def replace(current: Deployment) -> Deployment:
            return Deployment(
                model=model,
                stable=spec.stable,
                canary=spec.canary,
                shadows=spec.shadows,
                protected=current.protected,
                approval=current.approval,
                revision=current.revision,
            )

        return await self.change(model, "deployment.set", actor, spec.reason, replace)

    async def promote(self, model: str, actor: str, reason: str = "") -> Deployment:
        """Make the canary the stable version."""

        def promote(current: Deployment) -> Deployment:
            if current.canary is None:
                raise PolicyConflictError(f"model {model!r} has no canary to promote")
            return msgspec.structs.replace(current, stable=current.canary.version, canary=None)

        return await self.change(model, "deployment.promote", actor, reason, promote)

    async def rollback(self, model: str, actor: str, reason: str = "") -> Deployment:
        """Send the canary no traffic, at once."""

        def roll_back(current: Deployment) -> Deployment:
            if current.canary is None:
                raise PolicyConflictError(f"model {model!r} has no canary to roll back")
            return msgspec.structs.replace(
                current, canary=Canary(version=current.canary.version, weight=0.0)
            )

        return await self.change(model, "deployment.rollback", actor, reason, roll_back)

    async def register(
        self, name: str, model_path: Path, reference_path: Path, *, actor: str, **details: Any
    ) -> Manifest:
        """Register a new version (as the CLI does) and record it in the audit log."""
        if (error := self.state.error) is not None:
            raise error  # refused before the version is written: it could not be recorded
        manifest = await asyncio.to_thread(
            self.registry.register, name, model_path, reference_path, actor=actor, **details
        )
        await self._commit(
            Change(
                model=name,
                action="model.register",
                actor=actor,
                reason=details.get("description", ""),
                after={"version": manifest.version, "sha256": manifest.sha256},
            )
        )
        return manifest

    async def audit(self) -> AuditLog:
        """The audit log and its head, from the state backend."""
        return await self.state.audit()

    def deployments(self) -> Mapping[str, Deployment]:
        """Every deployment in force in this process."""
        return {name: policy.deployment for name, policy in self._router.policies().items()}

    async def change(
        self,
        model: str,
        action: str,
        actor: str,
        reason: str,
        edit: Callable[[Deployment], Deployment],
    ) -> Deployment:
        """Edit the deployment of `model` in one audited, compare-and-set step: `edit` gets
        the current deployment and returns the next (its revision is set here). A change a
        protected model must have approved is recorded as its pending change instead, and
        the deployment returned holds it (`registry.approvals`)."""
        await self.ensure(model)
        async with self._lock(model):
            applied = self._policy(model).deployment
            # The stored deployment is the base (another worker may have changed it); when
            # the store has none readable (a damaged value), the one in force here is. (A
            # Redis that lost its state has it written back before it is read.)
            stored = (await self.state.deployments()).get(model)
            stored_revision = stored.revision if stored else 0
            base = stored if stored and stored.revision >= applied.revision else applied
            proposed = msgspec.structs.replace(
                edit(base), revision=max(applied.revision, stored_revision) + 1
            )
            await self._validate(proposed)
            if needs_approval(base, proposed) and not action.startswith(APPROVAL):
                # A protected model: recorded as a pending change, applied on approval.
                proposed = request(
                    base,
                    proposed,
                    action=action,
                    actor=actor,
                    reason=reason,
                    now=time.time(),
                    ttl=self._approval_ttl,
                )
                action = f"{APPROVAL}request"
            # A version that fails to load leaves the policy as it is (503 with the reason).
            await self._load(proposed, strict=True)
            await self._commit(
                Change(
                    model=model,
                    action=action,
                    actor=actor,
                    reason=reason,
                    expected_revision=stored_revision,
                    deployment=proposed,
                    before=_audited(base),
                    after=_audited(proposed),
                )
            )
            await self._apply(proposed, actor=actor, reason=reason)
        return proposed

    async def _commit(self, change: Change) -> AuditEntry:
        entry = await self.state.commit(change)
        if self._on_commit is not None:
            self._on_commit(change)
        return entry

    def _policy(self, model: str) -> Policy:
        policy = self._router.policy(model)
        if policy is None:
            raise NotFoundError(f"model {model!r} is not registered")
        return policy

    async def _validate(self, proposed: Deployment) -> None:
        versions = await asyncio.to_thread(self.registry.versions, proposed.model)
        check_policy(proposed, versions)
        stable = await asyncio.to_thread(self.registry.manifest, proposed.model, proposed.stable)
        # Only versions given traffic must share the stable inputs, so a canary whose files
        # are damaged can still be rolled back to 0%.
        for version in sorted(proposed.routed_versions() - {proposed.stable}):
            other = await asyncio.to_thread(self.registry.manifest, proposed.model, version)
            if other.signature.inputs != stable.signature.inputs:
                raise PolicyConflictError(
                    f"version {version} takes other inputs than stable version "
                    f"{proposed.stable}; it cannot share its traffic"
                )

    async def _on_change(self, model: str, deployment: Deployment | None) -> None:
        if deployment is None:
            return
        policy = self._router.policy(model)
        if policy is not None and policy.deployment.revision >= deployment.revision:
            return  # already applied here (this process made the change, or a resync)
        async with self._lock(model):
            if policy is not None and not await self._store_answers(deployment):
                self._apply_later(deployment)
                return
            try:
                await self._apply(deployment)
            except Exception:  # keep serving the policy in force; the next change retries
                logger.exception("cannot apply %s revision %d", model, deployment.revision)

    async def _store_answers(self, deployment: Deployment) -> bool:
        """Whether the registry's store answers, so the change's versions can be loaded.

        While it does not, the policy in force keeps serving (its versions are loaded):
        switching would send calls to versions this replica cannot load.
        """
        try:
            await asyncio.to_thread(self.registry.check)
        except StoreUnavailableError as exc:
            logger.warning(
                "%s; %s revision %d is applied once it answers (every %g s)",
                exc,
                deployment.model,
                deployment.revision,
                APPLY_RETRY_SECONDS,
            )
            return False
        return True

    def _apply_later(self, deployment: Deployment) -> None:
        """Try a deferred change again later, once per model (the newest change wins)."""
        waiting = self._deferred.get(deployment.model)
        self._deferred[deployment.model] = deployment
        if waiting is not None:
            return  # its retry is scheduled and will take this newer deployment

        async def retry() -> None:
            await asyncio.sleep(APPLY_RETRY_SECONDS)
            newest = self._deferred.pop(deployment.model)
            await self._on_change(newest.model, newest)

        task = asyncio.get_running_loop().create_task(retry())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _load(self, deployment: Deployment, *, strict: bool) -> None:
        """Load every routed version; `strict` raises the first failure, else each failure
        is left to the repository, which answers that version's calls with it."""
        for version in sorted(deployment.routed_versions()):
            try:
                await self._repository.get(deployment.model, version, routed=True)
            except ServiceUnavailableError:
                if strict:
                    raise

    async def _apply(self, deployment: Deployment, *, actor: str = "", reason: str = "") -> None:
        """Put `deployment` in force; `actor` and `reason` (when this process made the
        change) go into its log line."""
        policy = self._router.policy(deployment.model)
        if policy is not None and policy.deployment.revision >= deployment.revision:
            return  # this change, or a newer one, is already in force
        await self._load(deployment, strict=False)
        self._router.set_policy(deployment)
        self._repository.release(deployment.model, deployment.routed_versions())
        before = policy.deployment if policy is not None else None
        logger.info(
            "deployment of %s revision %d%s: %s",
            deployment.model,
            deployment.revision,
            _by(actor, reason),
            describe_change(before, deployment),
            extra={"model": deployment.model},
        )

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())


def _by(actor: str, reason: str) -> str:
    """` (by alice: "why")` for a change this process made; nothing for one it applies."""
    if not actor:
        return ""
    return f" (by {actor}: {msgspec.json.encode(reason).decode()})" if reason else f" (by {actor})"


__all__ = ["CONTROLLER", "DeploymentManager", "DeploymentSpec", "PolicyError"]


def _audited(deployment: Deployment) -> Deployment:
    """`deployment` as the audit records it: without its rollout's evaluation history, which
    the entries of the evaluations already hold one at a time (kept, every entry would carry
    up to 50 evaluations twice)."""
    if deployment.rollout is None or not deployment.rollout.history:
        return deployment
    rollout = msgspec.structs.replace(deployment.rollout, history=())
    return msgspec.structs.replace(deployment, rollout=rollout)
