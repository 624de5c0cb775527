"""The console's comparison page on the real app: the figures `GET /v1/models/{m}/compare`
answers for the same pair, worst first, with the differing manifest fields flagged, live
evidence after real calls, hostile names kept as text, and a read session let in."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import numpy as np
import polars as pl
import pytest
from litestar.testing import TestClient
from markupsafe import escape

from gateway.app import create_app
from gateway.settings import Settings
from gateway.ui import words
from registry import ModelRegistry
from tests import models
from tests.conftest import ADMIN_TOKEN, READ_TOKEN, TOKENS
from tests.test_compare import training_set
from tests.test_console_security import PAGE, log_in

Client = TestClient[Any]
READER = {"Authorization": f"Bearer {READ_TOKEN}"}
HOSTILE = '<img src=x onerror=alert(1)> & "</title>'


class Rows(HTMLParser):
    """The attributes of every element that carries `key` (unescaped, as a browser reads
    them), in document order."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if self.key in values:
            self.found.append(values)


def rows(page: str, key: str) -> list[dict[str, str]]:
    parser = Rows(key)
    parser.feed(page)
    return parser.found


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """`pricing` v1 and v2, retrained on data whose f0 moved by one std; `hostile` v1 and
    v2, whose feature, owner and metric names are markup."""
    home = tmp_path_factory.mktemp("compare-page")
    registry = ModelRegistry(home / "models")
    registry.register(
        "pricing",
        models.affine_model(home / "v1.onnx"),
        training_set(home / "june.parquet", seed=1, shift=0.0),
        owner="pricing-team",
        metrics={"auc": 0.81},
    )
    registry.register(
        "pricing",
        models.affine_model(home / "v2.onnx", offset=2.0),
        training_set(home / "july.parquet", seed=2, shift=1.0),
        owner="pricing-team",
        metrics={"auc": 0.84},
        description="retrained on July",
    )
    models.passthrough_model(home / "passthrough.onnx")
    for version, shift in ((1, 0.0), (2, 3.0)):
        values = np.random.default_rng(version).normal(size=(400, 2))
        values[:, 0] += shift
        reference = home / f"hostile-{version}.parquet"
        pl.DataFrame(values, schema=[HOSTILE, "plain"], orient="row").write_parquet(reference)
        registry.register(
            "hostile",
            home / "passthrough.onnx",
            reference,
            owner=HOSTILE,
            metrics={HOSTILE: float(version)},
            description=HOSTILE,
        )
    with TestClient(app=create_app(Settings(home=home, tokens=TOKENS))) as test_client:
        yield test_client


def compare_page(client: Client, model: str, a: int = 1, b: int = 2) -> str:
    page = client.get(f"/ui/models/{model}/compare", params={"a": a, "b": b}, headers=PAGE)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    return page.text


def send(client: Client, version: int, calls: int) -> None:
    for call in range(calls):
        batch = np.random.default_rng(call).normal(size=(2, 4)).astype(np.float32)
        tensor = {"name": "x", "shape": [2, 4], "datatype": "FP32"}
        body = {"inputs": [{**tensor, "data": batch.reshape(-1).tolist()}]}
        answer = client.post(f"/v2/models/pricing/versions/{version}/infer", json=body)
        assert answer.status_code == 200, answer.text


def test_a_read_session_sees_the_apis_figures_worst_first(client: Client) -> None:
    send(client, 1, 12)
    send(client, 2, 8)
    found = client.get("/v1/models/pricing/compare", params={"a": 1, "b": 2}, headers=READER).json()
    log_in(client, READ_TOKEN)
    page = compare_page(client, "pricing")

    shifts = rows(page, "data-feature")
    assert shifts[0]["data-feature"] == "f0"  # the shifted one first
    assert [row["data-verdict"] for row in shifts] == ["shifted", *["unchanged"] * 3]
    expected = {shift["name"]: shift for shift in found["training_sets"]["features"]}
    assert {row["data-feature"] for row in shifts} == set(expected)
    for row in shifts:
        shift = expected[row["data-feature"]]
        assert row["data-psi"] == words.number(shift["psi"])
        assert row["data-ks"] == words.number(shift["ks"])
        assert row["data-p-value"] == words.p_value(shift["p_value"])
    assert float(shifts[0]["data-psi"]) > 0.5

    fields = rows(page, "data-field")
    flagged = {row["data-field"] for row in fields if row["data-differs"] == "true"}
    assert flagged == {"description", "metrics.auc", "parent_version", "training_data"}
    differences = {"description", "metrics", "parent_version", "training_data"}
    assert set(found["differences"]) == differences
    assert "june.parquet" in page
    assert "july.parquet" in page

    live = found["live"]
    sides = {row["data-version"]: row for row in rows(page, "data-version")}
    assert set(sides) == {"1", "2"}
    assert (live["a"]["calls"], live["b"]["calls"]) == (12, 8)
    for side in (live["a"], live["b"]):
        cells = page.split(f'<tr data-version="{side["version"]}">', 1)[1].split("</tr>", 1)[0]
        assert f"<td>{side['calls']}</td><td>0</td>" in cells
        assert f"<td>{words.share(side['error_rate'], 2)}</td>" in cells
        assert f"<td>{words.seconds(side['latency_p99_seconds'])}</td>" in cells


def test_the_version_page_links_to_the_comparison(client: Client) -> None:
    log_in(client, READ_TOKEN)
    page = client.get("/ui/models/pricing/versions/1", headers=PAGE)
    assert page.status_code == 200
    assert 'action="/ui/models/pricing/compare"' in page.text
    assert '<input type="hidden" name="a" value="1">' in page.text
    assert '<option value="2">v2</option>' in page.text
    assert '<option value="1">' not in page.text  # not with itself


def test_hostile_names_stay_text(client: Client) -> None:
    log_in(client, ADMIN_TOKEN)
    page = compare_page(client, "hostile")
    assert "<img" not in page
    assert '</title>"' not in page
    escaped = str(escape(HOSTILE))  # as the templates escape it
    assert page.count(escaped) >= 3  # the feature, and the owner and description rows
    shifts = rows(page, "data-feature")
    assert shifts[0]["data-feature"] == HOSTILE  # unescaped by the parser: the same name
    assert shifts[0]["data-verdict"] == "shifted"
    metrics = [row["data-field"] for row in rows(page, "data-field")]
    assert f"metrics.{HOSTILE}" in metrics


def test_mistakes_are_told_and_strangers_sent_to_log_in(client: Client) -> None:
    log_in(client, READ_TOKEN)
    unknown = client.get("/ui/models/pricing/compare", params={"a": 1, "b": 9}, headers=PAGE)
    assert unknown.status_code == 404
    assert "text/html" in unknown.headers["content-type"]
    missing = client.get("/ui/models/pricing/compare", params={"a": 1}, headers=PAGE)
    assert missing.status_code == 400
    zero = client.get("/ui/models/pricing/compare?a=0&b=1", headers={"HX-Request": "true"})
    assert zero.status_code == 400
    assert zero.json()["error"]
    bad_name = client.get("/ui/models/no%20such/compare?a=1&b=2", headers={"HX-Request": "true"})
    assert bad_name.status_code == 400
    client.cookies.clear()
    stranger = client.get(
        "/ui/models/pricing/compare?a=1&b=2", headers=PAGE, follow_redirects=False
    )
    assert (stranger.status_code, stranger.headers["location"]) == (303, "/ui/login")
