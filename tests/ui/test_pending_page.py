"""Pending changes of a protected model in the console, on the real app: shown on the
models page and the pending page; approved or rejected by a second admin's session with
its CSRF secret, through the same service as `/admin/pending`; refused to the admin who
asked, to a read session, and to a form without the secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, READ_TOKEN, register_models
from tests.test_approvals import ALICE, APPROVERS, BOB_TOKEN, ask_promotion, protect, with_canary
from tests.test_console_security import HTMX, PAGE, log_in

Client = TestClient[Any]


@pytest.fixture
def client(tmp_path: Path, artifacts: Path) -> Iterator[Client]:
    """Affine v1 and v2 (stable), protected, v1 a 10% canary, and alice's request to
    promote it waiting; alice and bob are admins, grafana reads."""
    home = register_models(tmp_path, artifacts)
    with TestClient(app=create_app(Settings(home=home, tokens=APPROVERS))) as test_client:
        protect(test_client)
        with_canary(test_client)
        yield test_client


def decide(client: Client, change: str, verdict: str, **form: str) -> Any:
    return client.post(f"/ui/pending/{change}/{verdict}", data=form, headers=HTMX)


def stable(client: Client) -> int:
    deployment = client.get("/admin/models/affine/deployment", headers=ALICE).json()
    return int(deployment["stable"])


def test_a_second_admin_approves_through_the_console(client: Client) -> None:
    change = ask_promotion(client)
    csrf = log_in(client, BOB_TOKEN)
    models = client.get("/ui", headers=PAGE).text
    assert 'data-protected="true"' in models
    assert f'data-change="{change}"' in models
    assert "asked by alice (ok)" in models
    page = client.get("/ui/models/affine/pending", headers=PAGE).text
    assert 'id="approve-form"' in page
    assert 'id="reject-form"' in page

    assert decide(client, change, "approve", reason="looks right").status_code == 403  # no CSRF
    no_reason = decide(client, change, "approve", _csrf=csrf)
    assert no_reason.status_code == 400
    assert "reason is required" in no_reason.json()["error"]
    assert stable(client) == 2

    done = decide(client, change, "approve", reason="checked the canary", _csrf=csrf)
    assert done.status_code == 200, done.text
    assert 'id="last-decision" data-status="approved"' in done.text
    assert "by bob" in done.text
    assert stable(client) == 1
    log = client.get("/admin/audit", headers=ALICE, params={"model": "affine"}).json()
    approval = [entry for entry in log["entries"] if entry["action"] == "approval.approve"]
    assert [(e["actor"], e["reason"]) for e in approval] == [("bob", "checked the canary")]
    assert log["intact"]


def test_the_admin_who_asked_is_refused_and_may_withdraw(client: Client) -> None:
    change = ask_promotion(client)
    csrf = log_in(client, ADMIN_TOKEN)
    refused = decide(client, change, "approve", reason="mine is fine", _csrf=csrf)
    assert refused.status_code == 403
    assert "a second admin must approve it" in refused.json()["error"]
    assert stable(client) == 2
    form = client.post(  # a plain form, without htmx: the refusal, not a crash
        f"/ui/pending/{change}/approve",
        data={"reason": "mine is fine", "_csrf": csrf},
        follow_redirects=False,
    )
    assert form.status_code == 403
    assert "second admin" in form.json()["error"]
    no_reason = decide(client, change, "reject", _csrf=csrf)
    assert no_reason.status_code == 400
    withdrawn = decide(client, change, "reject", reason="asked too early", _csrf=csrf)
    assert withdrawn.status_code == 200, withdrawn.text
    assert 'data-status="rejected"' in withdrawn.text
    assert client.get("/admin/pending", headers=ALICE).json() == []
    assert stable(client) == 2
    again = decide(client, change, "approve", reason="late", _csrf=csrf)
    assert again.status_code == 409  # decided already: told, not applied


def test_a_read_session_sees_the_change_without_buttons(client: Client) -> None:
    change = ask_promotion(client)
    csrf = log_in(client, READ_TOKEN)
    page = client.get("/ui/models/affine/pending", headers=PAGE)
    assert page.status_code == 200
    assert f'data-change="{change}"' in page.text
    assert "<dt>action</dt><dd>deployment.promote</dd>" in page.text
    assert 'id="approve-form"' not in page.text
    assert 'id="reject-form"' not in page.text
    assert re.search(r"requested by</dt><dd>alice", page.text)
    for verdict in ("approve", "reject"):
        denied = decide(client, change, verdict, reason="sure", _csrf=csrf)
        assert denied.status_code == 403
        assert "acting needs an admin token" in denied.json()["error"]
    assert stable(client) == 2


def test_unknown_changes_and_models_are_not_found(client: Client) -> None:
    csrf = log_in(client, BOB_TOKEN)
    unknown = decide(client, "0123456789ab", "approve", reason="r", _csrf=csrf)
    assert unknown.status_code == 404
    page = client.get("/ui/models/nope/pending", headers=PAGE)
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    quiet = client.get("/ui/models/affine/pending", headers=PAGE).text
    assert "No change awaits approval." in quiet
    assert 'id="protected">protected</span>' in quiet
