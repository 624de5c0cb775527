"""One console request: who asks, the gateway's parts the pages read, and how a page and
its live region are rendered."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response
from litestar.di import NamedDependency
from litestar.response import Template

from gateway.deployments import DeploymentManager
from gateway.live_evidence import LiveEvidence
from gateway.rollouts import RolloutController
from gateway.ui.session import ConsoleSession
from monitor.drift import DriftMonitor

LIVE_SECONDS = 2  # how often a page asks whether its content changed
Page = Response[Any]


class RenderedHtml(str):
    """HTML a template produced (so escaped already), inserted by another as it is."""

    __slots__ = ()

    def __html__(self) -> str:
        """The markup as is, for Jinja2's autoescape."""
        return str(self)


@dataclass(frozen=True, kw_only=True)
class Console:
    """A request to the console's pages, past the session guard."""

    request: Request[Any, Any, Any]
    session: ConsoleSession
    manager: DeploymentManager
    monitor: DriftMonitor
    controller: RolloutController
    evidence: LiveEvidence  # what versions showed while serving, for the comparison page

    def page(self, template: str, page: str, **context: Any) -> Page:
        """A whole page: `template` with the session (for the top bar and the forms)."""
        context = {"session": self.session, "page": page, **context}
        return Template(template, context=context, media_type=MediaType.HTML)

    def redirect(self, url: str) -> Page:
        """Send htmx to another page (htmx follows `HX-Redirect`)."""
        return Response(b"", headers={"HX-Redirect": url})

    async def region(
        self,
        template: str,
        url: str,
        view: Any,
        query: dict[str, str] | None = None,
        *,
        every: int = LIVE_SECONDS,
    ) -> tuple[str, RenderedHtml]:
        """The live region of a page: `template` over `view`, in the element that polls
        `url` every `every` seconds; and the digest of its content. Rendered in a worker
        thread: hundreds of charts take tens of milliseconds the event loop must not wait."""

        def render() -> tuple[str, RenderedHtml]:
            body = self._render(template, {"view": view, "session": self.session})
            digest = hashlib.sha256(body.encode()).hexdigest()[:16]
            poll = f"{url}?{urlencode({**(query or {}), 'seen': digest})}"
            wrapper = {"body": body, "url": poll, "digest": digest, "every": every}
            return digest, self._render("live.html", wrapper)

        return await asyncio.to_thread(render)

    async def fragment(
        self,
        template: str,
        url: str,
        view: Any,
        seen: str,
        query: dict[str, str] | None = None,
        *,
        every: int = LIVE_SECONDS,
    ) -> Page:
        """The live region alone, for htmx to swap in; 204 (htmx keeps what it shows) while
        its digest is still `seen`."""
        digest, html = await self.region(template, url, view, query, every=every)
        if seen == digest:
            return Response(b"", status_code=204)
        return Response(str(html), media_type=MediaType.HTML)

    def _render(self, template: str, context: dict[str, Any]) -> RenderedHtml:
        engine = self.request.app.template_engine
        assert engine is not None  # the app factory configures the console's templates
        return RenderedHtml(engine.get_template(template).render(**context))


Asked = NamedDependency[Console]  # the request, its session, and the gateway's parts
