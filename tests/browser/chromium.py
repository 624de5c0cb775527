"""Headless Chromium for the browser tests: Debian's `chromium` through its `chromium-driver`
(`make tools` installs both), kept offline, with what it fetched and complained of on record."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LOOPBACK = ("127.0.0.1", "127.0.0.2")  # the gateway, and the other origin of the CSRF tests
T = TypeVar("T")


def start_chromium() -> WebDriver:
    """A headless Chromium that can reach nothing but loopback addresses: every host name
    resolves to nothing, and its background services (updates, sync, safe browsing) are off.
    Its performance log records every request; its browser log, CSP violations."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            raise RuntimeError(f"{path} is missing: `make tools` installs chromium and its driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # Every name and address resolves to nothing, but the two loopback addresses.
        "--host-resolver-rules=MAP * ~NOTFOUND , " + " , ".join(f"EXCLUDE {a}" for a in LOOPBACK),
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-features=OptimizationHints,MediaRouter,Translate",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # The driver path is given: Selenium Manager never downloads one.
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@dataclass
class Traffic:
    """What the browser did since it was last asked: requests and their answers."""

    requested: list[str]  # every URL it asked for (or meant to: blocked ones too)
    statuses: dict[str, list[int]]  # per URL, the status of each answer
    headers: dict[str, dict[str, str]]  # per URL, the headers of its last answer (lowercase)
    blocked: list[tuple[str, str]]  # (URL, why) of each request the browser itself stopped


def traffic(driver: WebDriver) -> Traffic:
    """Drain the performance log into the requests it records."""
    seen = Traffic(requested=[], statuses={}, headers={}, blocked=[])
    urls: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            seen.requested.append(params["request"]["url"])
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            seen.blocked.append((urls.get(params["requestId"], "?"), params["blockedReason"]))
        elif message["method"] == "Network.responseReceived":
            response = params["response"]
            seen.statuses.setdefault(response["url"], []).append(int(response["status"]))
            seen.headers[response["url"]] = {
                name.lower(): value for name, value in response["headers"].items()
            }
    return seen


def off_loopback(urls: list[str]) -> list[str]:
    """The URLs that went (or tried to go) anywhere but a loopback address."""
    return [
        url
        for url in urls
        if urlsplit(url).scheme not in ("data", "about", "chrome-error")
        and urlsplit(url).hostname not in LOOPBACK
    ]


def csp_violations(driver: WebDriver) -> list[str]:
    """The browser's console messages since last asked that report a CSP violation."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def wait_for(driver: WebDriver, found: Callable[[WebDriver], T], timeout: float = 10.0) -> T:
    """What `found` returns once truthy, or a timeout error."""
    result: T = WebDriverWait(driver, timeout, poll_frequency=0.1).until(found)
    return result


@dataclass
class Drawn:
    """One chart as the browser has it: what it says it draws, and what it does."""

    label: str  # its aria-label
    declared: int  # its data-series
    series: set[str]  # the distinct data-series-name inside it


def charts(driver: WebDriver, within: str = "") -> list[Drawn]:
    """Every chart (an svg that says how many series it draws) under `within`, read in one
    script: a page that redraws itself meanwhile cannot mix two versions of it."""
    script = """
        return Array.from(document.querySelectorAll(arguments[0])).map((svg) => [
            svg.getAttribute("aria-label"),
            Number(svg.getAttribute("data-series")),
            Array.from(svg.querySelectorAll("[data-series-name]"),
                       (e) => e.getAttribute("data-series-name")),
        ]);
    """
    found = driver.execute_script(script, f"{within} svg[data-series]".strip())
    return [
        Drawn(label=label, declared=declared, series=set(names)) for label, declared, names in found
    ]


def screenshot(driver: WebDriver, directory: Path, name: str) -> Path:
    """A full-window screenshot of the page, as `directory/name.png`."""
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
    return path


def fetch(driver: WebDriver, url: str, **init: Any) -> dict[str, Any]:
    """`fetch(url, init)` from the page the browser is on: its status and body text."""
    script = """
        const [url, init, done] = arguments;
        fetch(url, init).then(
            async (response) => done({status: response.status, text: await response.text()}),
            (error) => done({status: 0, text: String(error)}),
        );
    """
    result: dict[str, Any] = driver.execute_async_script(script, url, init)
    return result
