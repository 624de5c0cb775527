"""Token roles on the real app: labels need a token that may send them (they decide the
accuracy gate), and the `feedback` role can do nothing else."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, READ_TOKEN

Client = TestClient[Any]
LABELS = {"items": [{"id": "never-sampled", "label": 1}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_labels_need_a_feedback_or_admin_token(client: Client) -> None:
    for headers in [{}, bearer("wrong")]:
        refused = client.post("/v1/feedback", json=LABELS, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
    read = client.post("/v1/feedback", json=LABELS, headers=bearer(READ_TOKEN))
    assert read.status_code == 403
    assert "has the read role; writing here needs admin or feedback" in read.json()["error"]
    for token in (FEEDBACK_TOKEN, ADMIN_TOKEN):
        accepted = client.post("/v1/feedback", json=LABELS, headers=bearer(token))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["unknown"] == ["never-sampled"]


def test_a_feedback_token_cannot_use_the_admin_api(client: Client) -> None:
    labeller = bearer(FEEDBACK_TOKEN)
    assert client.get("/admin/models/affine/deployment", headers=labeller).status_code == 403
    refused = client.put("/admin/models/affine/deployment", json={"stable": 1}, headers=labeller)
    assert refused.status_code == 403
    assert "feedback role" in refused.json()["error"]
    assert client.get("/admin/status", headers=labeller).status_code == 403
    # predictions and drift reports stay open, as before
    assert client.get("/v1/models/affine/drift").status_code == 200
