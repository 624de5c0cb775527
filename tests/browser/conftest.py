"""One real gateway for the browser tier, serving real models to real traffic, with two
rollouts under way: `affine` (a bad canary the gates roll back) and `steady` (a canary
whose evaluations stay inconclusive, so it keeps running for the buttons to steer, and
whose users' first feature has shifted: drift)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from registry import ModelRegistry
from tests import models
from tests.browser.chromium import start_chromium, wait_for
from tests.conftest import ADMIN_TOKEN, gateway_process
from tests.test_rollouts import FAST

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WIDE = 200  # features of the model whose version page must still render
# affine: v1 adds 1 where stable v2 adds 2, so its outputs diverge and it is rolled back.
BAD_CANARY = {**FAST, "min_samples": 10}
# steady: never enough calls for a verdict, so it runs (and can be paused) all along; its
# inputs drift, which its rollout does not judge.
ENDLESS = {
    **BAD_CANARY,
    "min_samples": 1_000_000,
    "gates": {**FAST["gates"], "input_drift": False},
}


@dataclass
class Console:
    """The gateway under test: its URL, and an admin client of its API."""

    url: str
    api: httpx.Client

    def rollout(self, model: str) -> dict[str, Any]:
        """The rollout state `/admin` reports."""
        state: dict[str, Any] = self.api.get(f"/admin/models/{model}/rollout").json()
        return state

    def audit(self, **filters: str) -> list[dict[str, Any]]:
        """The audit entries `/admin/audit` reports for `filters`."""
        entries: list[dict[str, Any]] = self.api.get("/admin/audit", params=filters).json()[
            "entries"
        ]
        return entries


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The gateway, sampling every call, evaluating drift twice a second, with users
    calling `affine`, `steady` (its first feature shifted: drift) and `wide`."""
    root = tmp_path_factory.mktemp("console")
    registry = ModelRegistry(root / "models")
    add_one, add_two = models.affine_model(root / "v1.onnx"), root / "v2.onnx"
    models.affine_model(add_two, offset=2.0)
    reference = models.affine_reference(root / "affine.parquet")
    for name, versions in (("affine", (add_one, add_two)), ("steady", (add_one, add_one))):
        for model in versions:
            registry.register(name, model, reference, target="label", owner="browser-tests")
    wide = models.affine_model(root / "wide.onnx", features=WIDE)
    wide_reference = models.affine_reference(root / "wide.parquet", features=WIDE)
    registry.register("wide", wide, wide_reference, target="label", owner="browser-tests")
    settings = {
        "DRIFTGATE_SAMPLE_RATE": "1.0",
        "DRIFTGATE_DRIFT_PANE_SECONDS": "1",
        "DRIFTGATE_DRIFT_WINDOW_PANES": "20",
        "DRIFTGATE_DRIFT_INTERVAL_SECONDS": "0.5",
    }
    with (
        gateway_process(root, **settings) as (url, _),
        httpx.Client(base_url=url, headers=ADMIN, timeout=10) as api,
    ):
        for model, config in (("affine", BAD_CANARY), ("steady", ENDLESS)):
            started = api.post(
                f"/admin/models/{model}/rollout",
                json={"version": 1, "config": config, "reason": "browser tests"},
            )
            assert started.status_code == 201, started.text
        stop = threading.Event()
        users = threading.Thread(target=_users, args=(url, stop), daemon=True)
        users.start()
        try:
            yield Console(url=url, api=api)
        finally:
            stop.set()
            users.join(timeout=10)


def _users(url: str, stop: threading.Event) -> None:
    """Calls at up to 150 a second, for at most five minutes: steady's first feature two
    standard deviations off its reference (drift), affine's and wide's as referenced."""
    rng = np.random.default_rng(3)
    deadline = time.monotonic() + 300
    with httpx.Client(base_url=url, timeout=10) as client:
        sent = 0
        while not stop.is_set() and time.monotonic() < deadline:
            sent += 1
            shifted = rng.normal(size=4) + np.array([2.0, 0.0, 0.0, 0.0])
            for model, row in (("affine", rng.normal(size=4)), ("steady", shifted)):
                _infer(client, model, row, f"user-{sent}")
            if sent % 5 == 0:
                _infer(client, "wide", rng.normal(size=WIDE), f"user-{sent}")
            time.sleep(0.01)


def _infer(client: httpx.Client, model: str, row: np.ndarray, key: str) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1, row.size], "datatype": "FP32", "data": row.tolist()}]
    }
    with contextlib.suppress(httpx.TransportError):  # the gateway is stopping: tests are over
        client.post(f"/v2/models/{model}/infer", json=body, headers={"x-routing-key": key})


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium per test module."""
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: WebDriver, console: Console, token: str) -> None:
    """Log in through the form, as a person would; ends on the models page."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})  # whoever was logged in before
    driver.get(f"{console.url}/ui/login")
    field = driver.find_element("id", "token")
    field.send_keys(token)
    field.submit()
    wait_for(driver, lambda d: d.current_url.rstrip("/") == f"{console.url}/ui")
