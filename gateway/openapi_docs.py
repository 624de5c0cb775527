"""The OpenAPI document, built on its first request instead of at every start.

Litestar builds the document from the routes the first time `app.openapi_schema` is read,
and caches it. Building it takes most of a second (every handler's types become schemas),
and the gateway's corrections (`document_infer`, `document_errors`, `document_schemas`) must
be applied to it once, before it is first rendered. Applied at startup they made every
start of every worker pay for a document few callers ask for; here the first request under
the docs path pays instead, in a worker thread so that the event loop keeps serving.

Only public Litestar API is used: the app's `before_request` hook runs before the docs
handlers render `app.openapi_schema`, which they read after it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request
from litestar.openapi.spec import OpenAPI

from gateway.error_docs import document_errors
from gateway.infer_docs import document_infer
from gateway.schema_docs import document_schemas


def document(openapi: OpenAPI) -> None:
    """Apply the gateway's additions and corrections to a document Litestar built. In this
    order: the errors and schemas refer to the infer messages `document_infer` adds."""
    document_infer(openapi)
    document_errors(openapi)
    document_schemas(openapi)


class DocsOnDemand:
    """A `before_request` hook of one app: the first request under `path` (`/docs`,
    `/docs/openapi.json`, ...) has the app's document built and passed to `complete`
    (`document`), exactly once however many such requests arrive together; other requests
    pass untouched."""

    def __init__(self, path: str, complete: Callable[[OpenAPI], None] = document) -> None:
        self._path = path.rstrip("/")
        self._complete = complete
        self._lock = threading.Lock()  # the build runs in worker threads, one at a time
        self._done = False

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        """Before a handler: build the document first if this request is for the docs."""
        if self._done:
            return
        path: str = request.scope["path"]
        if path == self._path or path.startswith(self._path + "/"):
            await asyncio.to_thread(self._build, request.app)

    def _build(self, app: Litestar) -> None:
        with self._lock:
            if not self._done:
                self._complete(app.openapi_schema)
                self._done = True
