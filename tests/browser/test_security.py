"""The console's defences, seen from a real browser: who may log in and act, its cookies,
its headers, and forged requests from a page of another origin."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.chromium import csp_violations, fetch, screenshot, traffic, wait_for
from tests.browser.conftest import Console, log_in
from tests.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, READ_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
PAUSE = "/ui/models/steady/rollout/pause"


@pytest.fixture(autouse=True)
def no_csp_violation(browser: WebDriver) -> Iterator[None]:
    """The console's pages keep to their own Content-Security-Policy."""
    csp_violations(browser)
    yield
    assert csp_violations(browser) == []


def csrf_of(driver: WebDriver) -> str:
    """The CSRF secret the page gives htmx (in the body's hx-headers)."""
    headers = driver.find_element("tag name", "body").get_attribute("hx-headers")
    secret: str = json.loads(str(headers))["X-CSRF-Token"]
    return secret


def test_cookies_are_httponly_and_same_site_strict(browser: WebDriver, console: Console) -> None:
    log_in(browser, console, ADMIN_TOKEN)
    browser.get(f"{console.url}/ui/audit")
    (session,) = [c for c in browser.get_cookies() if c["name"] == "driftgate_console"]
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/ui")
    assert session["secure"] is False  # plain http here; over TLS it is Secure (unit tested)
    assert ADMIN_TOKEN not in session["value"]
    assert "driftgate_console" not in browser.execute_script("return document.cookie")
    assert all(ADMIN_TOKEN not in url for url in traffic(browser).requested)


def test_every_console_and_docs_answer_carries_the_security_headers(
    browser: WebDriver, console: Console
) -> None:
    log_in(browser, console, ADMIN_TOKEN)
    traffic(browser)
    for page in ("/ui", "/ui/audit", "/ui/models/steady/rollout", "/ui/login"):
        browser.get(f"{console.url}{page}")
    browser.get(f"{console.url}/docs")
    wait_for(browser, lambda d: d.find_elements("css selector", ".swagger-ui .opblock"), 20)
    answered = traffic(browser).headers
    own = [url for url in answered if url.startswith(f"{console.url}/ui") or "/docs" in url]
    assert len(own) >= 8  # the pages, their assets, the OpenAPI document
    for url in own:
        headers = answered[url]
        assert headers["content-security-policy"].startswith("default-src 'self'"), url
        assert "frame-ancestors 'none'" in headers["content-security-policy"], url
        assert headers["x-content-type-options"] == "nosniff", url
        assert headers["x-frame-options"] == "DENY", url
        assert headers["referrer-policy"] == "same-origin", url


def test_the_browser_enforces_the_policy(browser: WebDriver, console: Console) -> None:
    log_in(browser, console, READ_TOKEN)
    browser.get(f"{console.url}/ui/audit")
    traffic(browser)
    # What an injected snippet would try: another origin's image, an inline script.
    browser.execute_script("""
        const image = document.createElement("img");
        image.src = "http://127.0.0.2:9/beacon.png";
        document.body.append(image);
        const script = document.createElement("script");
        script.textContent = "window.injected = true";
        document.body.append(script);
    """)
    refused = wait_for(browser, lambda d: csp_violations(d) or None)
    assert any("img-src" in line or "default-src" in line for line in refused), refused
    assert browser.execute_script("return window.injected === undefined")
    assert ("http://127.0.0.2:9/beacon.png", "csp") in traffic(browser).blocked


def test_a_read_token_sees_no_buttons_and_its_post_is_refused(
    browser: WebDriver, console: Console, tmp_path: Path
) -> None:
    log_in(browser, console, READ_TOKEN)
    browser.get(f"{console.url}/ui/models/steady/rollout")
    wait_for(browser, lambda d: d.find_elements("id", "rollout-status"))
    assert browser.find_elements("css selector", "button.act, #steer, #decide") == []
    screenshot(browser, tmp_path, "rollout-read-only")
    # The same request the button would send, with this session's own CSRF secret.
    answer = fetch(browser, PAUSE, method="POST", headers={"X-CSRF-Token": csrf_of(browser)})
    assert answer["status"] == 403
    assert "admin" in json.loads(answer["text"])["error"]
    assert console.rollout("steady")["status"] == "running"


def test_a_feedback_token_cannot_log_in(browser: WebDriver, console: Console) -> None:
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get(f"{console.url}/ui/login")
    field = browser.find_element("id", "token")
    field.send_keys(FEEDBACK_TOKEN)
    field.submit()
    refusal = wait_for(browser, lambda d: d.find_elements("css selector", ".login-error"))
    assert "feedback role" in refusal[0].text
    assert not [c for c in browser.get_cookies() if c["name"] == "driftgate_console"]


def test_a_post_without_the_csrf_token_or_with_a_wrong_one_is_refused(
    browser: WebDriver, console: Console
) -> None:
    log_in(browser, console, ADMIN_TOKEN)
    browser.get(f"{console.url}/ui/models/steady/rollout")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for headers, body in (
        ({}, None),
        ({"X-CSRF-Token": "not-this-sessions"}, None),
        (form, "reason=forged&_csrf=not-this-sessions"),
    ):
        answer = fetch(browser, PAUSE, method="POST", headers=headers, body=body)
        assert answer["status"] == 403, answer
        assert "CSRF" in json.loads(answer["text"])["error"]
    assert console.rollout("steady")["status"] == "running"
    # With the page's own secret the same request goes through: the refusals were for it.
    secret = {"X-CSRF-Token": csrf_of(browser)}
    assert fetch(browser, PAUSE, method="POST", headers=secret)["status"] == 200
    assert console.rollout("steady")["status"] == "paused"
    resume = "/ui/models/steady/rollout/resume"
    assert fetch(browser, resume, method="POST", headers=secret)["status"] == 200


@pytest.fixture
def other_origin(console: Console) -> Iterator[str]:
    """A page on another origin (127.0.0.2) whose form posts itself to the console."""
    page = f"""<!DOCTYPE html><html><body>
        <form id="forged" method="post" action="{console.url}{PAUSE}">
          <input type="hidden" name="reason" value="forged">
          <input type="hidden" name="_csrf" value="guessed">
        </form>
        <script>document.getElementById("forged").submit()</script>
        </body></html>""".encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/"
    finally:
        with contextlib.suppress(OSError):
            server.shutdown()
        server.server_close()


def test_a_post_from_another_origins_page_is_refused(
    browser: WebDriver, console: Console, other_origin: str, tmp_path: Path
) -> None:
    log_in(browser, console, ADMIN_TOKEN)  # the victim is logged in
    traffic(browser)
    browser.get(other_origin)
    target = f"{console.url}{PAUSE}"
    wait_for(browser, lambda d: d.current_url == target)
    statuses = wait_for(browser, lambda d: traffic(d).statuses.get(target))
    assert statuses == [403]
    assert "not from this gateway's console" in browser.find_element("tag name", "body").text
    screenshot(browser, tmp_path, "forged-post")
    assert console.rollout("steady")["status"] == "running"
    assert not [e for e in console.audit(model="steady") if e["reason"] == "forged"]


def test_logging_out_ends_the_session(browser: WebDriver, console: Console) -> None:
    log_in(browser, console, ADMIN_TOKEN)
    browser.find_element("css selector", "form.logout button").click()
    wait_for(browser, lambda d: d.current_url == f"{console.url}/ui/login")
    browser.get(f"{console.url}/ui/audit")
    assert browser.current_url == f"{console.url}/ui/login"
