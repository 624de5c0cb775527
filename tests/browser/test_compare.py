"""The comparison page in a real browser: reached from the version page's form, it shows
both versions side by side and keeps to the console's Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.browser.chromium import csp_violations, off_loopback, traffic, wait_for
from tests.browser.conftest import Console, log_in
from tests.conftest import READ_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def offline(browser: WebDriver) -> Iterator[None]:
    """After the test: nothing left loopback, and no page broke its CSP."""
    traffic(browser)
    csp_violations(browser)
    yield
    requested = traffic(browser).requested
    assert requested
    assert off_loopback(requested) == []
    assert csp_violations(browser) == []


def test_the_version_page_opens_the_comparison(browser: WebDriver, console: Console) -> None:
    log_in(browser, console, READ_TOKEN)
    browser.get(f"{console.url}/ui/models/steady/versions/2")
    Select(browser.find_element("id", "compare-b")).select_by_value("1")
    browser.find_element("css selector", "#compare-form button").click()
    wait_for(browser, lambda d: "/ui/models/steady/compare?a=2&b=1" in d.current_url)
    features = browser.find_elements("css selector", "#training-sets tr[data-feature]")
    assert [f.get_attribute("data-verdict") for f in features] == ["unchanged"] * 4
    fields = browser.find_elements("css selector", "#manifests tr[data-differs='true']")
    assert {f.get_attribute("data-field") for f in fields} == {"parent_version"}
    sides = browser.find_elements("css selector", "#live-evidence tr[data-version]")
    assert [s.get_attribute("data-version") for s in sides] == ["2", "1"]
    assert all(int(s.find_elements("tag name", "td")[0].text) > 0 for s in sides)
