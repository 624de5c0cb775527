"""Two versions side by side, from a real gateway on a loopback socket and from the CLI:
manifests, their training sets' differences, and the evidence of their traffic."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from scipy.stats import ks_2samp

from gateway.cli import main
from registry import ModelRegistry, NumericProfile
from registry.distribution import background, quantiles, share_below
from registry.profile import profile_series
from tests import models
from tests.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, READ_TOKEN, running_gateway

READER = {"Authorization": f"Bearer {READ_TOKEN}"}
SHIFTED = "f0"  # moved by one std between the two training sets
ROWS = np.random.default_rng(21).normal(size=(300, 4)).astype(np.float32)


def training_set(path: Path, *, seed: int, shift: float) -> Path:
    data = np.random.default_rng(seed).normal(size=(2000, 4)).astype(np.float32)
    data[:, 0] += shift
    pl.DataFrame(data, schema=["f0", "f1", "f2", "f3"], orient="row").write_parquet(path)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pricing` v1 (`x + 1`) and v2 (`x + 2`), retrained on data whose f0 moved."""
    root = tmp_path_factory.mktemp("compare")
    registry = ModelRegistry(root / "models")
    registry.register(
        "pricing",
        models.affine_model(root / "v1.onnx"),
        training_set(root / "june.parquet", seed=1, shift=0.0),
        owner="pricing-team",
        metrics={"auc": 0.81},
    )
    registry.register(
        "pricing",
        models.affine_model(root / "v2.onnx", offset=2.0),
        training_set(root / "july.parquet", seed=2, shift=1.0),
        owner="pricing-team",
        metrics={"auc": 0.84},
        description="retrained on July",
    )
    return root


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[str]:
    """One gateway that samples every call and judges drift five times a second."""
    with running_gateway(
        home,
        DRIFTGATE_SAMPLE_RATE="1",
        DRIFTGATE_DRIFT_INTERVAL_SECONDS="0.2",
        DRIFTGATE_DRIFT_PANE_SECONDS="1",
        DRIFTGATE_GRPC_PORT="0",
    ) as url:
        yield url


def test_a_profile_read_as_a_distribution_keeps_its_bins_and_levels() -> None:
    rng = np.random.default_rng(4)
    # A continuous part and a level holding a third of the values (a discrete feature's).
    values = np.concatenate([rng.normal(size=2000), np.full(1000, 2.0)])
    profile = profile_series(pl.Series("x", values))
    assert isinstance(profile, NumericProfile)
    counts = np.array(profile.fine_counts)
    shares = share_below(profile, profile.fine_edges)
    np.testing.assert_allclose(shares, np.cumsum(counts)[:-1] / counts.sum())
    assert share_below(profile, [profile.min, np.nextafter(profile.max, np.inf)]).tolist() == [0, 1]
    drawn = quantiles(profile, (np.arange(3000) + 0.5) / 3000)
    assert np.mean(drawn == 2.0) == pytest.approx(1 / 3, abs=0.002)  # the level stays a level
    assert ks_2samp(drawn, values).statistic < 0.01
    sample = background([profile, profile], 500, seed=3)
    assert sample.shape == (500, 2)
    assert (sample == background([profile, profile], 500, seed=3)).all()
    assert ks_2samp(sample[:, 1], values).statistic < 0.03


def compare(url: str, a: int = 1, b: int = 2, headers: dict[str, str] = READER) -> httpx.Response:
    return httpx.get(f"{url}/v1/models/pricing/compare", params={"a": a, "b": b}, headers=headers)


def test_a_retrain_on_shifted_data_shows_on_the_shifted_feature_only(
    gateway: str, home: Path
) -> None:
    response = compare(gateway)
    assert response.status_code == 200, response.text
    found = response.json()
    shifts = {shift["name"]: shift for shift in found["training_sets"]["features"]}
    assert set(shifts) == {"f0", "f1", "f2", "f3"}
    june, july = (pl.read_parquet(home / f"{month}.parquet") for month in ("june", "july"))
    for name, shift in shifts.items():
        # From profiles alone, within about one fine bin (1%) of scipy's exact statistic.
        exact = ks_2samp(june[name].to_numpy(), july[name].to_numpy()).statistic
        assert shift["ks"] == pytest.approx(exact, abs=0.015), name
    moved = shifts.pop(SHIFTED)
    assert moved["psi"] > 0.5
    assert moved["ks"] == pytest.approx(0.38, abs=0.05)  # Phi(0.5) - Phi(-0.5) for one std
    assert moved["mean_shift"] == pytest.approx(1.0, abs=0.1)
    assert {"psi", "mean_shift"} <= set(moved["large"])
    for name, kept in shifts.items():
        assert kept["psi"] < 0.05, name
        assert kept["ks"] < 0.06, name
        assert kept["large"] == [], name


def test_manifests_side_by_side(gateway: str) -> None:
    found = compare(gateway).json()
    a, b = found["a"], found["b"]
    assert (a["version"], b["version"]) == (1, 2)
    assert (a["metrics"], b["metrics"]) == ({"auc": 0.81}, {"auc": 0.84})
    assert b["parent_version"] == 1
    assert a["training_data"]["filename"] == "june.parquet"
    assert b["training_data"]["filename"] == "july.parquet"
    assert a["signature"] == b["signature"]
    assert set(found["differences"]) == {
        "description",
        "metrics",
        "parent_version",
        "training_data",
    }


def send(url: str, path: str, rows: np.ndarray) -> None:
    with httpx.Client(base_url=url) as client:
        for start in range(0, len(rows), 5):
            batch = rows[start : start + 5]
            tensor = {"name": "x", "shape": list(batch.shape), "datatype": "FP32"}
            request = {"inputs": [{**tensor, "data": batch.reshape(-1).tolist()}]}
            assert client.post(path, json=request).status_code == 200


def wait_for(url: str, ready: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = compare(url).json()
        if ready(found["live"]):
            return found["live"]
        assert time.monotonic() < deadline, found["live"]
        time.sleep(0.2)


def wait_for_drift(client: httpx.Client, path: str, rows: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path)
        if response.status_code == 200 and response.json()["outputs"]["samples"] == rows:
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_live_evidence_after_traffic(gateway: str) -> None:
    policy = {"stable": 1, "shadows": [{"version": 2, "percent": 100}], "reason": "shadow v2"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    changed = httpx.put(f"{gateway}/admin/models/pricing/deployment", json=policy, headers=admin)
    assert changed.status_code == 200, changed.text
    send(gateway, "/v2/models/pricing/versions/1/infer", ROWS)
    send(gateway, "/v2/models/pricing/versions/2/infer", ROWS)
    send(gateway, "/v2/models/pricing/infer", ROWS[:100])  # stable v1, copied to shadow v2
    send(gateway, "/v2/models/pricing/versions/2/infer", ROWS[:100])  # the same rows as v1
    for version in (1, 2):  # every row sampled, and judged by a drift evaluation
        with httpx.Client(base_url=gateway) as client:
            wait_for_drift(client, f"/v1/models/pricing/versions/{version}/drift", rows=400)
    calls = (len(ROWS) + 100) // 5
    live = wait_for(
        gateway,
        lambda live: (
            live["a"]["calls"] == calls
            and live["b"]["calls"] == calls
            and live["outputs"] is not None
            and live["shadows"] != []
            and live["shadows"][0]["comparisons"] == 20
        ),
    )
    for side in (live["a"], live["b"]):
        assert side["errors"] == 0
        assert side["error_rate"] == 0.0
        assert 0 < side["latency_p50_seconds"] <= side["latency_p99_seconds"]
        assert side["drift_status"] is not None
        assert side["quality"]["labelled"] == 0
    # v2 answers y one higher than v1 on the same rows; `total` is the same sum for both.
    outputs = live["outputs"]
    assert outputs["gate"] == "output_divergence"
    assert outputs["verdict"] == "fail"
    assert outputs["evidence"]["y[0]"] == pytest.approx(1.0, abs=0.25)
    assert outputs["evidence"]["total"] < 0.01
    (shadow,) = live["shadows"]
    assert shadow["shadow"] == 2
    assert shadow["errors"] == 0
    assert shadow["mean_abs_diff"] == pytest.approx(0.8, abs=1e-5)  # y: 1 (x4), total: 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": f"Bearer {FEEDBACK_TOKEN}"}, 403), (READER, 200)],
)
def test_the_comparison_needs_a_token_that_reads(
    gateway: str, headers: dict[str, str], status: int
) -> None:
    assert compare(gateway, headers=headers).status_code == status


@pytest.mark.parametrize(
    ("a", "b", "status", "words"),
    [(1, 9, 404, "has no version 9"), (0, 2, 400, "Expected `int` >= 1")],
)
def test_unknown_or_invalid_versions(gateway: str, a: int, b: int, status: int, words: str) -> None:
    response = compare(gateway, a=a, b=b)
    assert response.status_code == status
    assert words in response.json()["error"]


def test_the_cli_from_the_registry_and_from_the_gateway(
    home: Path, gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "pricing", "1", "2", "--home", str(home), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert local["live"] is None
    assert local["training_sets"]["features"][0]["name"] == SHIFTED
    assert main(["compare", "pricing", "1", "2", "--home", str(home)]) == 0
    table = capsys.readouterr().out
    assert "VERSION 1" in table
    assert "VERSION 2" in table
    assert "psi, mean_shift" in table
    assert "live evidence: ask a running gateway with --url" in table
    served = ["--url", gateway, "--token", READ_TOKEN]
    assert main(["compare", "pricing", "1", "2", *served, "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["live"]["a"]["version"] == 1
    assert remote["training_sets"] == local["training_sets"]
    assert main(["compare", "pricing", "1", "2", *served]) == 0
    assert "latency p99" in capsys.readouterr().out
    assert main(["compare", "pricing", "1", "9", "--home", str(home)]) == 1
    assert "has no version 9" in capsys.readouterr().err
