"""Errors are what the OpenAPI document says they are: `{"error": "..."}`, with the
headers HTTP asks for."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

Client = TestClient[Any]
ERROR = {"$ref": "#/components/schemas/ErrorResponse"}


def test_openapi_documents_every_error_body_as_sent(client: Client) -> None:
    document = client.get("/docs/openapi.json").json()
    assert document["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                schema = response["content"]["application/json"]["schema"]
                if path.endswith("/ready") and status == "503":  # not ready, and why
                    assert schema["$ref"].rpartition("/")[2] in ("ModelReady", "ServerReady")
                else:
                    assert schema == ERROR, (method, path, status)
            if operation.get("security"):
                assert {"401", "403"} <= operation["responses"].keys(), (method, path)
    feedback = document["paths"]["/v1/feedback"]["post"]
    assert feedback["security"] == [{"bearer": []}]
    invalid = client.put(
        "/admin/models/affine/deployment",
        json={"stable": "x"},
        headers={"Authorization": "Bearer s3cret-admin"},
    )
    assert invalid.status_code == 400
    assert set(invalid.json()) == {"error"}  # what the document now says


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v2/models/affine/infer", {"POST"}),
        ("PUT", "/v2/models/affine/versions/1/infer", {"POST"}),
        ("DELETE", "/v2/health/ready", {"GET"}),
        ("GET", "/v1/feedback", {"POST"}),
    ],
)
def test_405_names_the_allowed_methods(
    client: Client, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert allowed <= {part.strip() for part in response.headers["allow"].split(",")}
    assert set(response.json()) == {"error"}


LISTS, UPLOAD = "/v1/models/{name}/drift", "/admin/models/{name}/versions"


def test_openapi_documents_the_error_statuses_routes_answer(client: Client) -> None:
    # Found by the fuzz tier (tests/fuzz/): these answers were sent and not documented.
    document = client.get("/docs/openapi.json").json()
    paths = document["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            statuses = operation["responses"].keys()
            # Every route naming a model answers 404 for an unknown one, but the one that
            # lists (an empty list) and the upload (it creates the model).
            if "{name}" in path and path not in (LISTS, UPLOAD):
                assert "404" in statuses, (method, path)
            if path.startswith("/admin/models/{name}/") and method in ("post", "put"):
                assert "503" in statuses, (method, path)  # the state backend is down
                assert path == UPLOAD or "409" in statuses, (method, path)
    admin = {"Authorization": "Bearer s3cret-admin"}
    unknown = client.get("/admin/models/nope/deployment", headers=admin)
    assert unknown.status_code == 404
    no_canary = client.post("/admin/models/affine/promote", headers=admin)
    assert no_canary.status_code == 409
    assert "409" in paths["/admin/models/{name}/promote"]["post"]["responses"]
    assert set(no_canary.json()) == {"error"}
