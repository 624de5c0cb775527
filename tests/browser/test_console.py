"""The console in a real browser, offline: every page renders with its charts, the buttons
steer a rollout and are audited, pages follow changes by themselves, /docs works.

The pages that wait for the gateway to decide something (drift to persist, the gates to
roll a canary back) come last, so that the others' time counts towards their wait."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.chromium import (
    charts,
    csp_violations,
    off_loopback,
    screenshot,
    traffic,
    wait_for,
)
from tests.browser.conftest import WIDE, Console, log_in
from tests.conftest import ADMIN_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def offline(browser: WebDriver) -> Iterator[None]:
    """After each test: nothing left loopback, and no page broke its CSP."""
    traffic(browser)
    csp_violations(browser)
    yield
    requested = traffic(browser).requested
    assert requested  # the log is on: an empty one would prove nothing
    assert off_loopback(requested) == []
    assert csp_violations(browser) == []


@pytest.fixture(scope="module")
def admin(browser: WebDriver, console: Console) -> WebDriver:
    """The browser, logged in with the admin token `alice`."""
    log_in(browser, console, ADMIN_TOKEN)
    return browser


def assert_charts_whole(driver: WebDriver, within: str = "") -> int:
    """Every chart draws as many distinct series as it says; returns how many charts."""
    found = charts(driver, within)
    for chart in found:
        assert len(chart.series) == chart.declared, chart
    return len(found)


def test_the_models_page_lists_every_model(
    admin: WebDriver, console: Console, tmp_path: Path
) -> None:
    admin.get(f"{console.url}/ui")
    for model in ("affine", "steady", "wide"):
        section = admin.find_element("css selector", f'section[data-model="{model}"]')
        rows = section.find_elements("css selector", "tbody tr[data-version]")
        assert rows, model
        assert all(len(row.find_element("css selector", "code").text) >= 8 for row in rows)
    steady = admin.find_element("css selector", 'section[data-model="steady"]')
    assert "rollout of v1" in steady.text
    screenshot(admin, tmp_path, "models")


def test_pause_and_resume_through_the_buttons_are_audited(
    admin: WebDriver, console: Console, tmp_path: Path
) -> None:
    admin.get(f"{console.url}/ui/models/steady/rollout")
    for action, status in (("pause", "paused"), ("resume", "running")):
        admin.find_element("css selector", f'button[data-action="{action}"]').click()
        shown = f'span#rollout-status[data-status="{status}"]'
        wait_for(admin, lambda d, shown=shown: d.find_elements("css selector", shown))
        assert console.rollout("steady")["status"] == status
    screenshot(admin, tmp_path, "rollout-resumed")
    admin.get(f"{console.url}/ui/audit?model=steady&actor=alice")
    rows = admin.find_elements("css selector", "table.audit tbody tr")
    assert [(r.get_attribute("data-action"), r.get_attribute("data-actor")) for r in rows][:2] == [
        ("rollout.resume", "alice"),
        ("rollout.pause", "alice"),
    ]
    assert admin.find_element("id", "audit-verdict").get_attribute("data-intact") == "true"
    logged = [e["action"] for e in console.audit(model="steady", actor="alice")]
    assert logged[-2:] == ["rollout.pause", "rollout.resume"]
    screenshot(admin, tmp_path, "audit")


def test_an_open_page_shows_a_change_made_elsewhere_within_seconds(
    admin: WebDriver, console: Console
) -> None:
    admin.get(f"{console.url}/ui/models/steady/rollout")
    admin.execute_script("window.notReloaded = true")
    paused = console.api.post("/admin/models/steady/rollout/pause", json={"reason": "elsewhere"})
    assert paused.status_code == 200, paused.text
    try:
        shown = 'span#rollout-status[data-status="paused"]'
        wait_for(admin, lambda d: d.find_elements("css selector", shown), 8)
        assert admin.execute_script("return window.notReloaded") is True
    finally:
        console.api.post("/admin/models/steady/rollout/resume", json={"reason": "elsewhere"})


def test_a_page_of_a_200_feature_model_renders(
    admin: WebDriver, console: Console, tmp_path: Path
) -> None:
    admin.get(f"{console.url}/ui/models/wide/versions/1")
    inputs = "section.features:not(.outputs) article[data-feature]"
    wait_for(admin, lambda d: len(d.find_elements("css selector", inputs)) >= WIDE, 20)
    shown = len(admin.find_elements("css selector", inputs))  # each feature, and their PCA
    assert assert_charts_whole(admin, "section.features:not(.outputs)") == shown
    screenshot(admin, tmp_path, "wide-version")


def test_the_docs_render_offline(browser: WebDriver, console: Console, tmp_path: Path) -> None:
    browser.get(f"{console.url}/docs")
    operations = wait_for(
        browser, lambda d: d.find_elements("css selector", ".swagger-ui .opblock"), 20
    )
    assert len(operations) > 10
    assert "driftgate" in browser.find_element("css selector", ".swagger-ui .title").text
    # An operation opens with its parameters and schemas (and no inline style is needed).
    operations[0].find_element("css selector", ".opblock-summary").click()
    wait_for(browser, lambda d: d.find_elements("css selector", ".opblock.is-open .opblock-body"))
    screenshot(browser, tmp_path, "docs")


def test_a_version_page_overlays_reference_and_live_for_every_feature(
    admin: WebDriver, console: Console, tmp_path: Path
) -> None:
    admin.get(f"{console.url}/ui/models/steady/versions/2")
    # The first evaluation may still be ahead: the page shows it when it comes.
    wait_for(admin, lambda d: d.find_elements("css selector", "section.features article"), 20)
    features = admin.find_elements("css selector", "section.features:not(.outputs) article")
    names = [str(feature.get_attribute("data-feature")) for feature in features]
    assert {"f0", "f1", "f2", "f3"} <= set(names)  # and the joint (PCA) check of them all
    for name in names:
        (chart,) = charts(admin, f'section.features article[data-feature="{name}"]')
        assert chart.series == {"reference", "live"}, name
    assert assert_charts_whole(admin) >= 4
    # f0 is shifted by two standard deviations: once the drift persists over evaluations it
    # comes first, worst first, and the alarm names it.
    drifting = 'section.features article[data-feature="f0"][data-status="drift"]'
    wait_for(admin, lambda d: d.find_elements("css selector", drifting), 40)
    first = admin.find_element("css selector", "section.features article")
    assert first.get_attribute("data-feature") == "f0"
    assert "f0" in admin.find_element("id", "alarm").text
    screenshot(admin, tmp_path, "version")


def test_the_rollout_page_shows_the_failing_gate_of_a_rollback(
    admin: WebDriver, console: Console, tmp_path: Path
) -> None:
    admin.get(f"{console.url}/ui/models/affine/rollout")
    # The page follows the rollout by itself until the gates roll the canary back.
    status = 'span#rollout-status[data-status="rolled_back"]'
    wait_for(admin, lambda d: d.find_elements("css selector", status), 40)
    # Its outputs diverge from stable's (it adds 1 where stable adds 2): that gate failed.
    failing = admin.find_elements("css selector", "details.evaluation tr.failing[data-gate]")
    assert "output_divergence" in {row.get_attribute("data-gate") for row in failing}
    assert all(row.find_element("css selector", ".badge").text == "fail" for row in failing)
    (weights,) = charts(admin, "section.weights")
    assert weights.series == {"weight", "evaluations"}
    assert assert_charts_whole(admin) >= 1
    screenshot(admin, tmp_path, "rollout")


def test_a_refused_action_is_shown_with_the_gateways_reason(
    admin: WebDriver, console: Console, tmp_path: Path
) -> None:
    admin.get(f"{console.url}/ui/models/affine/rollout")  # rolled back: nothing to pause
    assert admin.find_elements("css selector", 'button[data-action="pause"]') == []
    admin.execute_script(  # what a stale page's button would send
        "htmx.ajax('POST', arguments[0], {target: '#live', swap: 'outerHTML'})",
        "/ui/models/affine/rollout/pause",
    )
    banner = admin.find_element("id", "console-error")
    wait_for(admin, lambda _: banner.is_displayed())
    assert banner.text.startswith("409: ")
    assert "no rollout to pause" in banner.text
    assert console.rollout("affine")["status"] == "rolled_back"
    screenshot(admin, tmp_path, "refused-action")
