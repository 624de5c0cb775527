"""Business values in feedback: validated, joined once like labels, counted in panes that
merge exactly across processes through a real Redis, reported and scraped per version."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.settings import Settings, load_settings
from monitor.business import MAX_VALUE_NAMES, ValueNameError, ValuePanes, merge_values
from monitor.feedback import FeedbackItem, FeedbackResult, item_of, outcome_payload
from monitor.feedback_redis import RedisPredictionLog
from monitor.panes import RedisPanes
from monitor.traffic import TrafficPanes, outcomes
from registry import Manifest
from tests.conftest import LABELLER, RedisServer
from tests.monitor import test_prediction_logs as contract
from tests.monitor.test_prediction_logs import Pair, join_until_known, outputs, redis_server_has
from tests.proxy import ReplyDropper

Client = TestClient[Any]
# The prediction logs' contract fixtures: one log, or two replicas on a real Redis.
anyio_backend = contract.anyio_backend
backend = contract.backend
capacity = contract.capacity
manifest = contract.manifest
pair = contract.pair

# --- validation: a caller's mistake is a 400 with {"error": ...} -----------------------------


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"id": "r1", "values": {"bad name": 1.0}}, "items[0].values"),
        ({"id": "r1", "values": {"../x": 1.0}}, "matching regex"),
        ({"id": "r1", "values": {f"v{i}": 1.0 for i in range(17)}}, "16"),
        ({"id": "r1", "values": {"revenue": "lots"}}, "float"),
        ({"id": "r1", "values": {"revenue": "inf"}}, "finite"),
        ({"id": "r1", "values": {"revenue": "NaN"}}, "finite"),
        ({"id": "r1", "values": {"revenue": [1.0]}}, "float"),
        ({"id": "r1", "values": {"revenue": None}}, "float"),
        ({"id": "r1", "values": {}}, "values"),
        ({"id": "r1"}, "label, values, or both"),
    ],
)
def test_malformed_values_are_refused(client: Client, item: dict[str, Any], fragment: str) -> None:
    response = client.post("/v1/feedback", json={"items": [item]}, headers=LABELLER)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_values_out_of_range_are_refused(client: Client, number: str) -> None:
    body = f'{{"items": [{{"id": "r1", "label": 1, "values": {{"revenue": {number}}}}}]}}'
    response = client.post(
        "/v1/feedback",
        content=body,
        headers={**LABELLER, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "out of range" in response.json()["error"]


def test_only_the_allowed_names_are_accepted(home: Path, settings: Settings) -> None:
    allowed = msgspec.structs.replace(settings, business_values=("revenue", "refunds"))
    with TestClient(app=create_app(allowed)) as client:
        bad = {"items": [{"id": "r1", "values": {"revenue": 1.0, "profit": 2.0}}]}
        response = client.post("/v1/feedback", json=bad, headers=LABELLER)
        assert response.status_code == 400
        assert "'profit'" in response.json()["error"]
        assert "business_values" in response.json()["error"]
        good = {"items": [{"id": "r1", "values": {"revenue": 1.0, "refunds": 0.0}}]}
        response = client.post("/v1/feedback", json=good, headers=LABELLER)
        assert response.status_code == 200, response.text
        assert response.json()["unknown"] == ["r1"]  # valid, never served


def test_the_setting_is_read_as_json_from_the_environment() -> None:
    environ = {"DRIFTGATE_BUSINESS_VALUES": '["revenue", "refunds"]'}
    assert load_settings(environ).business_values == ("revenue", "refunds")
    with pytest.raises(ValueError, match="business_values"):
        load_settings({"DRIFTGATE_BUSINESS_VALUES": '["no way"]'})


def test_without_an_allow_list_names_are_capped_all_or_none() -> None:
    panes = ValuePanes(pane_seconds=60.0, max_panes=5)
    panes.admit([f"v{i}" for i in range(MAX_VALUE_NAMES - 1)], ())
    with pytest.raises(ValueNameError, match="business_values"):
        panes.admit(["new1", "new2"], ())  # one too many: neither is taken
    panes.admit(["new1"], ())  # the last free name
    panes.admit(["v0", "new1"], ())  # known names always pass
    with pytest.raises(ValueNameError):
        panes.admit(["new2"], ())


# --- joining: once, with or without a label --------------------------------------------------


def test_an_items_payload_round_trips_and_ignores_key_order() -> None:
    first = FeedbackItem("r1", 1, {"b": 2.0, "a": 1.0})
    second = FeedbackItem("r1", 1, {"a": 1.0, "b": 2.0})
    assert outcome_payload(first) == outcome_payload(second)
    assert item_of("r1", outcome_payload(first)) == second
    alone = FeedbackItem("r2", values={"a": 0.5})
    assert item_of("r2", outcome_payload(alone)) == alone
    assert outcome_payload(FeedbackItem("r3", [1, 2])) == b"[1,2]"  # as before values


@pytest.mark.anyio
async def test_values_join_once_wherever_they_arrive(manifest: Manifest, pair: Pair) -> None:
    server, receiver, traffic = pair
    server.remember("r1", manifest, outputs(3.0))
    server.remember("r2", manifest, outputs(1.0))
    server.remember("r3", manifest, outputs(1.0))
    items = [
        FeedbackItem("r1", 1.0, {"revenue": 12.5}),  # a label and a value
        FeedbackItem("r2", values={"revenue": 2.25, "refunds": 1.0}),  # values alone
        FeedbackItem("r3", "no number", {"revenue": 100.0}),  # a bad label: nothing counts
    ]
    result = await join_until_known(receiver, items)
    assert result == FeedbackResult(2, [], [], ["r3"])
    stats = merge_values(traffic.values.own("affine", 1).values())
    assert (stats["revenue"].count, stats["revenue"].total) == (2, 14.75)
    assert stats["revenue"].squares == 12.5**2 + 2.25**2
    assert (stats["refunds"].count, stats["refunds"].total) == (1, 1.0)
    assert outcomes(traffic.own("affine", 1).values()).labelled == 1  # r1's label only
    # The same items again are retries: accepted, not counted twice; other values for a
    # joined call are unknown, as a second label is.
    again = await server.join(
        [
            FeedbackItem("r1", 1.0, {"revenue": 12.5}),
            FeedbackItem("r2", values={"refunds": 1.0, "revenue": 2.25}),
        ]
    )
    assert again == FeedbackResult(2, [], [], [])
    other = await server.join([FeedbackItem("r1", 1.0, {"revenue": 99.0})])
    assert other == FeedbackResult(0, ["r1"], [], [])
    assert merge_values(traffic.values.own("affine", 1).values())["revenue"].count == 2
    assert await receiver.labels(["r1", "r2"]) in ({"r1": [1.0]}, {})  # no label for r2


@pytest.mark.anyio
async def test_values_whose_reply_was_lost_are_taken_over_and_counted_once(
    manifest: Manifest, redis_server: RedisServer
) -> None:
    """The claim keeps the values: whoever takes an unsettled claim over counts them."""
    proxy = ReplyDropper(redis_server.port)
    await proxy.start()
    server_traffic, cut_traffic, other_traffic = (
        TrafficPanes(pane_seconds=60.0, max_panes=5) for _ in range(3)
    )
    server = RedisPredictionLog(redis_server.url, server_traffic)
    cut = RedisPredictionLog(f"redis://127.0.0.1:{proxy.port}/0", cut_traffic)
    other = RedisPredictionLog(redis_server.url, other_traffic, claim_seconds=0.5)
    for log in (server, cut, other):
        await log.start()
    item = FeedbackItem("r1", values={"revenue": 7.5})
    try:
        server.remember("r1", manifest, outputs(3.0))
        for _ in range(100):
            if await redis_server_has(redis_server, "r1"):
                break
            await asyncio.sleep(0.02)
        proxy.drop = True
        with pytest.raises(Exception, match="unreachable"):
            await cut.join([item])
        proxy.drop = False
        assert await other.join([item]) == FeedbackResult(1, [], [], [])
        await asyncio.sleep(0.6)
        await other.take_over_claims()  # unless its writer, which looks too, took it first
        stats = merge_values(other_traffic.values.own("affine", 1).values())
        assert (stats["revenue"].count, stats["revenue"].total) == (1, 7.5)
        await asyncio.sleep(0.6)
        assert await other.take_over_claims() == 0
        assert merge_values(cut_traffic.values.own("affine", 1).values()) == {}
    finally:
        for log in (server, cut, other):
            await log.close()
        await proxy.close()


# --- panes: exact sums across processes -------------------------------------------------------


@pytest.mark.anyio
async def test_value_panes_of_two_processes_merge_exactly_through_redis(
    redis_server: RedisServer,
) -> None:
    rng = np.random.default_rng(3)
    # Cents: sums of such values are exact in binary only when they are dyadic, so use
    # quarters, which every float adds exactly; the figures must then match to the bit.
    first_values = rng.integers(0, 400, size=300) / 4
    second_values = rng.integers(0, 400, size=200) / 4
    workers = [TrafficPanes(pane_seconds=60.0, max_panes=5) for _ in range(2)]
    for traffic, values in zip(workers, (first_values, second_values), strict=True):
        for value in values:
            traffic.values.record("m", 1, {"revenue": float(value)})
    stores = [RedisPanes(redis_server.url, process=name) for name in ("one", "two")]
    try:
        since = time.time() - 120
        for traffic, store in zip(workers, stores, strict=True):
            await store.exchange("business:m:1", traffic.values.own("m", 1), since)
        merged = [merge_values(await store.exchange("business:m:1", {}, since)) for store in stores]
    finally:
        for store in stores:
            await store.close()
    everything = np.concatenate([first_values, second_values])
    for stats in merged:  # each process reads both
        revenue = stats["revenue"]
        assert revenue.count == everything.size
        assert revenue.total == float(everything.sum())
        assert revenue.squares == float((everything**2).sum())
        assert revenue.mean == pytest.approx(everything.mean(), rel=1e-12)
        assert revenue.variance == pytest.approx(everything.var(ddof=1), rel=1e-9)


# --- the drift report and the metrics ---------------------------------------------------------


def test_a_versions_values_are_reported_and_scraped(home: Path, settings: Settings) -> None:
    fast = msgspec.structs.replace(
        settings, sample_rate=1.0, drift_pane_seconds=1.0, drift_interval_seconds=0.2
    )
    revenue = [12.5, 7.5, 10.0, 2.0]
    with TestClient(app=create_app(fast)) as client:
        for index in range(len(revenue)):
            body = {
                "id": f"call-{index}",
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}],
            }
            served = client.post("/v2/models/affine/versions/1/infer", json=body)
            assert served.status_code == 200, served.text
        items = [
            {"id": f"call-{index}", "values": {"revenue": value}}
            for index, value in enumerate(revenue)
        ]
        deadline = time.monotonic() + 10
        while items:  # a sampled prediction reaches the log off the request path
            result = client.post("/v1/feedback", json={"items": items}, headers=LABELLER).json()
            items = [item for item in items if item["id"] in result["unknown"]]
            assert time.monotonic() < deadline, result
        report = _business(client, lambda b: b.get("revenue", {}).get("count") == len(revenue))
        figures = report["revenue"]
        assert figures["sum"] == sum(revenue)
        assert figures["mean"] == pytest.approx(np.mean(revenue), rel=1e-12)
        assert figures["variance"] == pytest.approx(np.var(revenue, ddof=1), rel=1e-12)
        error = math.sqrt(np.var(revenue, ddof=1) / len(revenue))
        assert figures["standard_error"] == pytest.approx(error, rel=1e-12)
        metrics = client.get("/metrics").text
    labels = '{model="affine",name="revenue",version="1"}'
    assert f"driftgate_business_value_calls{labels} 4.0" in metrics
    assert f"driftgate_business_value_sum{labels} 32.0" in metrics
    assert f"driftgate_business_value_mean{labels} 8.0" in metrics


def _business(client: Client, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        response = client.get("/v1/models/affine/versions/1/drift")
        if response.status_code == 200 and done(response.json()["business"]):
            business: dict[str, Any] = response.json()["business"]
            return business
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)
