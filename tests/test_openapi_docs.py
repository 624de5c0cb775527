"""The OpenAPI document is built on its first request, and is the one built at startup before."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar import Litestar, get
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPI
from litestar.serialization import encode_json
from litestar.testing import AsyncTestClient, TestClient

from gateway.app import create_app
from gateway.openapi_docs import DocsOnDemand, document
from gateway.settings import Settings

Client = TestClient[Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Litestar's test clients run on asyncio


def _eager(app: Litestar) -> bytes:
    """The document as the gateway served it when it was completed at startup: Litestar's
    build of the same app, `document`ed, encoded as its JSON render plugin does.

    A second build needs Litestar's private `OpenAPIPlugin._build_openapi` (the public
    `update_openapi_schema` drops what it builds); if Litestar renames it, this test fails
    at the call. The same app, not a second one: Litestar orders a path's handlers through
    a set of handler objects, and whether the GET or the POST of a path is seen first
    decides where a shared component takes its `default` from, so two apps built alike may
    differ there."""
    openapi = app.plugins.get(OpenAPIPlugin)._build_openapi()
    document(openapi)
    return encode_json(openapi.to_schema())


def test_served_document_is_the_one_built_at_startup(settings: Settings) -> None:
    app: Any = create_app(settings)
    with TestClient(app=app) as client:
        served = client.get("/docs/openapi.json")
    assert served.status_code == 200
    assert served.content == _eager(app.litestar)  # the served app wraps Litestar's
    # Completed, not Litestar's own: the raw infer routes are there.
    assert "/v2/models/{name}/infer" in served.json()["paths"]


def test_every_docs_page_renders_the_completed_document(client: Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    yaml = client.get("/docs/openapi.yaml")
    assert yaml.status_code == 200
    assert "/v2/models/{name}/infer:" in yaml.text  # the first render was YAML, completed


def _app(hook: DocsOnDemand) -> Litestar:
    @get("/ping", sync_to_thread=False)
    def ping() -> str:
        return "pong"

    config = OpenAPIConfig(title="t", version="1", path="/docs")
    return Litestar([ping], openapi_config=config, before_request=hook)


@pytest.mark.anyio
async def test_document_is_completed_once_by_the_first_docs_request() -> None:
    calls: list[float] = []

    def complete(openapi: OpenAPI) -> None:
        calls.append(time.monotonic())
        time.sleep(0.2)  # long enough for the other requests to arrive meanwhile
        document(openapi)

    async with AsyncTestClient(app=_app(DocsOnDemand("/docs", complete))) as client:
        assert (await client.get("/ping")).text == "pong"
        assert calls == []  # nothing built until the docs are asked for
        answers = await asyncio.gather(*(client.get("/docs/openapi.json") for _ in range(8)))
        assert len(calls) == 1
        bodies = {answer.content for answer in answers}
        assert len(bodies) == 1
        assert "/v2/models/{name}/infer" in answers[0].json()["paths"]
        assert (await client.get("/docs/openapi.yaml")).status_code == 200
        assert len(calls) == 1


@pytest.mark.anyio
async def test_paths_that_only_begin_like_the_docs_build_nothing() -> None:
    calls: list[OpenAPI] = []
    async with AsyncTestClient(app=_app(DocsOnDemand("/docs/", calls.append))) as client:
        assert (await client.get("/docsearch")).status_code == 404
        assert calls == []
        assert (await client.get("/docs")).status_code == 200
        assert len(calls) == 1
