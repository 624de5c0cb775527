"""The console's sessions, CSRF checks, headers and errors on the real app (the browser
tier, tests/browser/, drives the same in Chromium)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from gateway.tokens import parse_tokens
from gateway.ui.session import LoginRefusedError, Sessions
from registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, READ_TOKEN, TOKENS

Client = TestClient[Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAGE = {"Accept": "text/html"}
HTMX = {"HX-Request": "true"}
STATIC = Path(__file__).parents[1] / "gateway" / "ui" / "static"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Any:
    """The gateway over affine versions 1 and 2 (stable 2)."""
    home = tmp_path_factory.mktemp("console-home")
    registry = ModelRegistry(home / "models")
    for model in ("affine.onnx", "affine_v2.onnx"):
        registry.register("affine", artifacts / model, artifacts / "affine.parquet", target="label")
    return create_app(Settings(home=home, tokens=TOKENS))


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[Client]:
    with TestClient(app=app) as test_client:
        yield test_client


def log_in(client: Client, token: str) -> str:
    """Log in through the form; returns the session's CSRF secret."""
    client.cookies.clear()
    form = client.get("/ui/login")
    secret = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert secret is not None, form.text
    answer = client.post(
        "/ui/login", data={"token": token, "_csrf": secret[1]}, follow_redirects=False
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui"), answer.text
    page = client.get("/ui/audit")
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert csrf is not None
    return csrf[1]


def test_without_a_session_a_browser_is_sent_to_log_in_and_a_script_told_why(
    client: Client,
) -> None:
    client.cookies.clear()
    page = client.get("/ui/audit", headers=PAGE, follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/ui/login")
    poll = client.get("/ui/live", headers=HTMX)
    assert (poll.status_code, poll.headers["hx-redirect"]) == (401, "/ui/login")
    assert "log in" in poll.json()["error"]
    assert client.post("/ui/logout").status_code == 401


def test_the_token_opens_a_signed_session_and_never_shows_in_it(client: Client) -> None:
    client.cookies.clear()
    form = client.get("/ui/login")
    secret = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert secret is not None
    login = client.post("/ui/login", data={"token": ADMIN_TOKEN, "_csrf": secret[1]})
    assert login.status_code == 200  # followed to the models page
    cookie = next(c for c in login.history[0].headers.get_list("set-cookie") if "console" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http
    assert ADMIN_TOKEN not in cookie
    assert "alice" in login.text


def test_the_session_cookie_is_secure_over_tls(app: Any) -> None:
    secure = TestClient(app=app, base_url="https://testserver.local")
    form = secure.get("/ui/login")
    assert "Secure" in form.headers["set-cookie"]
    secret = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert secret is not None
    login = secure.post(
        "/ui/login", data={"token": READ_TOKEN, "_csrf": secret[1]}, follow_redirects=False
    )
    cookie = next(c for c in login.headers.get_list("set-cookie") if "console" in c)
    assert "Secure" in cookie


@pytest.mark.parametrize(
    ("token", "status", "says"),
    [
        (FEEDBACK_TOKEN, 403, "feedback role"),
        ("not-a-token", 401, "no token has that secret"),
    ],
)
def test_a_token_without_a_console_role_cannot_log_in(
    client: Client, token: str, status: int, says: str
) -> None:
    client.cookies.clear()
    form = client.get("/ui/login")
    secret = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert secret is not None
    refused = client.post("/ui/login", data={"token": token, "_csrf": secret[1]})
    assert refused.status_code == status
    assert says in refused.text
    assert "driftgate_console" not in client.cookies


def test_a_login_form_from_elsewhere_is_refused(client: Client) -> None:
    client.cookies.clear()
    client.get("/ui/login")
    stale = client.post("/ui/login", data={"token": ADMIN_TOKEN, "_csrf": "guessed"})
    assert stale.status_code == 403
    assert "driftgate_console" not in client.cookies
    forged = client.post(
        "/ui/login",
        data={"token": ADMIN_TOKEN, "_csrf": "guessed"},
        headers={"Origin": "http://elsewhere.example"},
    )
    assert forged.status_code == 403
    assert "not from this gateway's console" in forged.json()["error"]


def test_sessions_end_when_forged_expired_or_their_token_changes() -> None:
    tokens = parse_tokens("alice:admin:first-secret,labels:feedback:third-secret")
    session, value = Sessions(tokens, 3600).login("first-secret")
    assert Sessions(tokens, 3600).read(value) == session
    assert session.can_act
    tampered = value.replace(value[-4:], "AAAA" if value[-4:] != "AAAA" else "BBBB")
    assert Sessions(tokens, 3600).read(tampered) is None
    rotated = parse_tokens("alice:admin:second-secret")
    assert Sessions(rotated, 3600).read(value) is None  # a new secret ends old sessions
    demoted = parse_tokens("alice:read:first-secret")
    read_only = Sessions(demoted, 3600).read(value)
    assert read_only is not None
    assert (read_only.role, read_only.can_act) == ("read", False)
    assert Sessions(parse_tokens("bob:admin:first-secret"), 3600).read(value) is None
    with pytest.raises(LoginRefusedError) as refused:
        Sessions(tokens, 3600).login("third-secret")
    assert refused.value.status_code == 403
    time.sleep(2.1)  # signatures carry whole seconds
    assert Sessions(tokens, 1).read(value) is None


def test_every_post_needs_this_origin_and_the_sessions_csrf_secret(client: Client) -> None:
    csrf = log_in(client, ADMIN_TOKEN)
    refusals = [
        {},
        {"X-CSRF-Token": "someone-elses"},
        {"X-CSRF-Token": csrf, "Origin": "http://elsewhere.example"},
        {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
    ]
    for headers in refusals:
        answer = client.post("/ui/logout", headers=headers, follow_redirects=False)
        assert answer.status_code == 403, headers
        assert answer.json()["error"]
    assert client.get("/ui/audit").status_code == 200  # still logged in
    out = client.post(
        "/ui/logout",
        data={"_csrf": csrf},
        headers={"Origin": str(client.base_url).rstrip("/")},
        follow_redirects=False,
    )
    assert (out.status_code, out.headers.get("location")) == (303, "/ui/login"), out.text
    assert client.get("/ui/audit", headers=PAGE, follow_redirects=False).status_code == 303


def test_promote_and_rollback_need_an_admin_and_a_reason_and_are_audited(client: Client) -> None:
    canary = {"stable": 2, "canary": {"version": 1, "weight": 10}, "reason": "try v1"}
    assert client.put("/admin/models/affine/deployment", headers=ADMIN, json=canary).is_success
    csrf = log_in(client, READ_TOKEN)
    denied = client.post(
        "/ui/models/affine/rollback", data={"reason": "r", "_csrf": csrf}, headers=HTMX
    )
    assert denied.status_code == 403
    assert "acting needs an admin token" in denied.json()["error"]
    csrf = log_in(client, ADMIN_TOKEN)
    missing = client.post("/ui/models/affine/rollback", data={"_csrf": csrf}, headers=HTMX)
    assert missing.status_code == 400
    assert "reason is required" in missing.json()["error"]
    done = client.post(
        "/ui/models/affine/rollback",
        data={"reason": "too slow", "_csrf": csrf},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/ui/models/affine/rollout")
    last = client.get("/admin/audit", headers=ADMIN, params={"actor": "alice"}).json()
    assert (last["entries"][-1]["action"], last["entries"][-1]["reason"]) == (
        "deployment.rollback",
        "too slow",
    )
    assert all(entry["actor"] == "alice" for entry in last["entries"])
    # No rollout ever ran here: htmx is sent to the models page.
    promoted = client.post(
        "/ui/models/affine/promote", data={"reason": "fine after all", "_csrf": csrf}, headers=HTMX
    )
    assert (promoted.status_code, promoted.headers["hx-redirect"]) == (200, "/ui")
    deployment = client.get("/admin/models/affine/deployment", headers=ADMIN).json()
    assert (deployment["stable"], deployment["canary"]) == (1, None)


def test_mistakes_are_told_as_pages_to_a_browser_and_as_json_to_htmx(client: Client) -> None:
    log_in(client, READ_TOKEN)
    page = client.get("/ui/models/nope/rollout", headers=PAGE)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "nope" in page.text
    fragment = client.get("/ui/models/nope/rollout/live", headers=HTMX)
    assert fragment.status_code == 404
    assert "nope" in fragment.json()["error"]
    bad_name = client.get("/ui/models/no%20such%20name/versions/1/live", headers=HTMX)
    assert bad_name.status_code == 400
    long_filter = client.get("/ui/audit/live", params={"actor": "x" * 500}, headers=HTMX)
    assert long_filter.status_code == 400


def test_an_unchanged_live_region_answers_204(client: Client) -> None:
    log_in(client, READ_TOKEN)
    page = client.get("/ui/audit?model=affine")
    poll = re.search(r'hx-get="([^"]+)"', page.text)
    assert poll is not None
    url = poll[1].replace("&amp;", "&")
    assert client.get(url, headers=HTMX).status_code == 204
    fresh = client.get(url.split("seen=")[0] + "seen=stale", headers=HTMX)
    assert fresh.status_code == 200
    assert 'id="live"' in fresh.text


def test_console_and_docs_answers_carry_the_security_headers(client: Client) -> None:
    client.cookies.clear()
    for path in ("/ui/login", "/ui/static/console.css", "/docs", "/docs/assets/swagger-ui.css"):
        headers = client.get(path).headers
        assert headers["content-security-policy"].startswith("default-src 'self'"), path
        assert "'unsafe-inline'" not in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
    refused = client.get("/ui/audit", headers=HTMX)
    assert refused.status_code == 401
    assert "content-security-policy" in refused.headers  # errors too
    assert "no-store" in client.get("/ui/login").headers["cache-control"]


def test_the_console_can_be_turned_off(tmp_path: Path) -> None:
    with TestClient(app=create_app(Settings(home=tmp_path, tokens=TOKENS, console=False))) as off:
        assert off.get("/ui/login").status_code == 404
        assert off.get("/docs").status_code == 200


def test_no_file_of_the_console_or_docs_names_another_host() -> None:
    own = [
        *(Path(__file__).parents[1] / "gateway" / "ui" / "templates").glob("*.html"),
        STATIC / "console.css",
        STATIC / "console.js",
        STATIC / "docs" / "swagger-start.js",
        STATIC / "docs" / "docs.css",
        Path(__file__).parents[1] / "gateway" / "ui" / "docs.py",
    ]
    for path in own:
        hosts = re.findall(r"https?://[^\s\"'<>)]+", path.read_text())
        assert [h for h in hosts if not h.startswith("http://www.w3.org/")] == [], path


def test_vendored_files_are_the_recorded_ones() -> None:
    rows = re.findall(
        r"^\| (\S+)[^|]*\| (\S+) \| (\S+) \|[^|]*\| ([0-9a-f]{64}) \|$",
        (STATIC / "VENDORED.md").read_text(),
        re.MULTILINE,
    )
    assert len(rows) == 7
    for path, _package, _version, digest in rows:
        assert hashlib.sha256((STATIC / path).read_bytes()).hexdigest() == digest, path
