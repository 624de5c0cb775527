"""`/docs` that works offline: Swagger UI from the package's own files, no CDN, no fonts.

Litestar's own Swagger page loads its assets from a CDN and starts Swagger UI with an inline
script, which the docs' Content-Security-Policy forbids; this page loads the vendored
bundle (gateway/ui/static/docs, see VENDORED.md) and a small start script of ours, both
from the gateway, and turns off Swagger UI's online validator badge.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

from gateway.ui.headers import DOCS_POLICY, SecurityHeaders

DOCS_PATH = "/docs"
ASSETS = Path(__file__).parent / "static" / "docs"
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="icon" href="/docs/assets/favicon.svg">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="stylesheet" href="/docs/assets/docs.css">
<script src="/docs/assets/swagger-ui-bundle.js" defer></script>
<script src="/docs/assets/swagger-start.js" defer></script>
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec}"></div>
</body>
</html>
"""


class OfflineSwaggerPlugin(OpenAPIRenderPlugin):
    """Swagger UI at `/docs`, from assets served under `/docs/assets`."""

    def __init__(self) -> None:
        super().__init__(path="/", favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The page that starts Swagger UI on the gateway's own OpenAPI document."""
        title = escape(str(openapi_schema.get("info", {}).get("title", "driftgate")))
        spec = escape(self.get_openapi_json_route(request))
        return _PAGE.format(title=title, spec=spec).encode()

    def receive_router(self, router: Router) -> None:
        """Serve the vendored assets beside the page."""
        router.register(
            create_static_files_router(path="/assets", directories=[ASSETS], name="docs-assets")
        )


def docs_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at `/docs`, the document as JSON and YAML; no page that needs a CDN."""
    return [OfflineSwaggerPlugin(), JsonRenderPlugin(), YamlRenderPlugin()]


def docs_router() -> Router:
    """The router `/docs` is served from, with the docs' security headers on every answer."""
    return Router(
        DOCS_PATH,
        route_handlers=[],
        include_in_schema=False,
        middleware=[SecurityHeaders(DOCS_POLICY)],
    )
