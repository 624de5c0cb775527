"""The console's views, built from a real app's components while real traffic flows:
models, a drifting version (worst first, the alarm, the histogram pulled apart), a hostile
feature name, and rollouts rolled back and promoted."""

from __future__ import annotations

import functools
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.deployments import DeploymentManager
from gateway.errors import NotFoundError
from gateway.rollouts import RolloutController
from gateway.settings import Settings
from gateway.ui import words
from gateway.ui.charts import Chart
from gateway.ui.views import FeatureView, models_view, rollout_view, version_view
from monitor.drift import DriftMonitor
from registry import ModelRegistry
from tests import models
from tests.conftest import ADMIN_TOKEN, TOKENS

T = TypeVar("T")
SVG = "{http://www.w3.org/2000/svg}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOSTILE = '<img src=x onerror=alert(1)> & "</title>'
FAST_ROLLOUT = {
    "interval_seconds": 1.0,
    "min_samples": 25,
    "steps": [50, 80],
    "failure_limit": 2,
    "consecutive_failure_limit": 2,
    "gates": {"max_p99_ratio": None, "max_p99_seconds": 1.0},
}
RNG = np.random.default_rng(13)


class Console:
    """The real app through its test client, with the components the views read."""

    def __init__(self, app: Any, client: TestClient[Any], home: Path, artifacts: Path) -> None:
        self.client = client
        self.home = home
        self.artifacts = artifacts
        dependencies = app.litestar.dependencies  # the served app wraps Litestar's
        self.manager: DeploymentManager = dependencies["manager"].dependency()
        self.monitor: DriftMonitor = dependencies["monitor"].dependency()
        self.controller: RolloutController = dependencies["controller"].dependency()

    def run(self, builder: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await a view builder on the app's own event loop."""
        portal = self.client.blocking_portal  # type: ignore[attr-defined]
        return portal.call(functools.partial(builder, *args, **kwargs))  # type: ignore[no-any-return]

    def infer(self, model: str, rows: np.ndarray, key: str | None = None) -> None:
        """Send `rows` [n, F] in calls of ten rows."""
        for start in range(0, len(rows), 10):
            batch = rows[start : start + 10].astype(np.float32)
            body = {
                "inputs": [
                    {
                        "name": "x" if model != "wine" else "input",
                        "shape": list(batch.shape),
                        "datatype": "FP32",
                        "data": batch.reshape(-1).tolist(),
                    }
                ]
            }
            headers = {"x-routing-key": f"{key}-{start}"} if key else {}
            response = self.client.post(f"/v2/models/{model}/infer", json=body, headers=headers)
            assert response.status_code == 200, response.text

    def evaluated(self, model: str, version: int, done: Callable[[Any], bool]) -> None:
        """Wait (20 s at most) until the version's latest report satisfies `done`."""
        deadline = time.monotonic() + 20
        while not ((report := self.monitor.report(model, version)) and done(report)):
            assert time.monotonic() < deadline, report
            time.sleep(0.1)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[Console]:
    """One app for the module: affine (v1, v2), a copy to roll out, the wine classifier, a
    model whose feature names are hostile markup, and one with a damaged old version."""
    home = tmp_path_factory.mktemp("console")
    registry = ModelRegistry(home / "models")
    for name in ("affine", "canaried", "broken"):
        for model in ("affine.onnx", "affine_v2.onnx"):
            registry.register(
                name, artifacts / model, artifacts / "affine.parquet", target="label", owner="tests"
            )
    registry.register(
        "wine",
        artifacts / "demo" / "model.onnx",
        artifacts / "demo" / "wine.parquet",
        target="target",
    )
    reference = home / "hostile.parquet"
    values = np.random.default_rng(0).normal(size=(300, 2))
    pl.DataFrame(values, schema=[HOSTILE, "plain"], orient="row").write_parquet(reference)
    models.passthrough_model(home / "passthrough.onnx")
    registry.register("hostile", home / "passthrough.onnx", reference)
    damaged = home / "models" / "broken" / "1"
    damaged.chmod(0o755)
    (damaged / "manifest.json").write_text("{not json")
    settings = Settings(
        home=home,
        tokens=TOKENS,
        sample_rate=1.0,
        drift_pane_seconds=1.0,
        drift_interval_seconds=0.2,
    )
    app = create_app(settings)
    with TestClient(app=app) as client:
        yield Console(app, client, home, artifacts)


def elements(chart: Chart) -> ET.Element:
    return ET.fromstring(chart.svg)


def series(chart: Chart, name: str) -> ET.Element:
    return next(e for e in elements(chart).iter() if e.get("data-series-name") == name)


def centre(chart: Chart, name: str) -> float:
    """Where a histogram series' mass sits on the x axis (bars or outline), in pixels."""
    group = series(chart, name)
    mass = position = 0.0
    base = 0.0
    for rect in group.findall(f"{SVG}rect"):
        x, width, height = (float(rect.get(a, "0")) for a in ("x", "width", "height"))
        mass += width * height
        position += width * height * (x + width / 2)
    for path in group.findall(f"{SVG}path"):
        x = y = 0.0
        for command, first, second in re.findall(
            r"([MVH])(-?[\d.]+)(?:,(-?[\d.]+))?", path.get("d", "")
        ):
            if command == "M":
                x, y = float(first), float(second)
                base = y
            elif command == "V":
                y = float(first)
            else:
                right = float(first)
                area = (right - x) * (base - y)
                mass += area
                position += area * (x + right) / 2
                x = right
    assert mass > 0, name
    return position / mass


def feature(features: tuple[FeatureView, ...], name: str) -> FeatureView:
    return next(f for f in features if f.name == name)


def test_models_page_lists_every_version_with_its_provenance(console: Console) -> None:
    view = console.run(models_view, console.manager, console.monitor)
    assert [m.name for m in view.models] == ["affine", "broken", "canaried", "hostile", "wine"]
    affine = view.models[0]
    assert (affine.stable, affine.canary, affine.rollout) == (2, "none", None)
    assert [v.version for v in affine.versions] == [2, 1]
    latest, first = affine.versions
    manifest = ModelRegistry(console.home / "models").manifest("affine", 2)
    assert (latest.role, latest.traffic, latest.owner) == ("stable", "100%", "tests")
    assert latest.sha256_short == manifest.sha256[:12]
    assert latest.training_data_short == manifest.training_data.sha256[:12]
    assert latest.training_data == "affine.parquet"
    assert latest.drift in ("not evaluated yet", "insufficient_data")
    assert latest.drift_class in ("status-none", "status-insufficient_data")
    assert (first.role, first.drift, first.drift_class) == ("", "not monitored", "status-none")
    broken = view.models[1]
    damaged = next(v for v in broken.versions if v.version == 1)
    assert "manifest.json is damaged" in damaged.damaged
    assert damaged.sha256_short == ""
    assert not next(v for v in broken.versions if v.version == 2).damaged


def test_version_page_sorts_worst_first_and_pulls_the_histograms_apart(console: Console) -> None:
    rows = RNG.normal(size=(400, 4))
    rows[:, 0] += 1.5  # one and a half reference std on f0 alone
    console.infer("affine", rows)
    console.evaluated("affine", 2, lambda r: r.inputs.status in ("warn", "drift"))
    console.infer("affine", rows + 0.01)  # drift needs a window of rows the alarm did not see
    console.evaluated("affine", 2, lambda r: r.inputs.status == "drift")
    view = console.run(version_view, console.manager, console.monitor, name="affine", version=2)

    assert (view.status, view.status_class, view.role) == ("drift", "status-drift", "stable")
    assert view.features[0].name == "f0"
    assert view.features[0].status == "drift"
    ranks = [words.SEVERITY[f.status] for f in (*view.features,)]
    assert ranks == sorted(ranks)
    f0 = view.features[0]
    assert view.alarm.startswith("Drift in ")
    assert f"f0 ({f0.reason})" in view.alarm
    assert "mean moved +1." in f0.reason
    assert any(e.name == "mean shift (std)" and e.flagged for e in f0.effects)
    assert any(t.flagged for t in f0.tests)
    assert f0.count >= 400
    assert "drift" in view.tally
    assert view.window.endswith("output rows")
    assert view.quality is not None
    assert view.quality.realized == "no labels yet"

    for chart in (f.chart for f in (*view.features, *view.outputs)):
        assert chart.series == ("reference", "live")
    shift = centre(f0.chart, "live") - centre(f0.chart, "reference")
    steady = centre(feature(view.features, "f1").chart, "live") - centre(
        feature(view.features, "f1").chart, "reference"
    )
    assert shift > 40, shift  # f0's live mass moved right of its reference
    assert abs(steady) < 20, steady
    assert view.history is not None
    assert view.history.series[0] == "version"
    assert "f0" in view.history.series


def test_a_hostile_feature_name_stays_text(console: Console) -> None:
    rows = RNG.normal(size=(300, 2))
    rows[:, 0] += 3.0
    console.infer("hostile", rows)
    console.evaluated("hostile", 1, lambda r: r.inputs.status in ("warn", "drift"))
    view = console.run(version_view, console.manager, console.monitor, name="hostile", version=1)
    hostile = view.features[0]
    assert hostile.name == HOSTILE
    assert HOSTILE in view.alarm  # plain text: the template escapes it
    charts = [hostile.chart, *(f.chart for f in view.outputs)]
    assert view.history is not None
    charts.append(view.history)
    assert HOSTILE in view.history.series
    for chart in charts:
        assert "<img" not in chart.svg
        root = elements(chart)  # still well-formed markup
        assert root.get("aria-label") == chart.title
    assert elements(hostile.chart).get("aria-label") == f"{HOSTILE}: reference and live window"


def test_a_categorical_output_is_drawn_as_bars(console: Console) -> None:
    wine = pl.read_parquet(console.artifacts / "demo" / "wine.parquet").drop("target")
    console.infer("wine", wine.to_numpy())
    console.evaluated("wine", 1, lambda r: r.outputs.samples >= wine.height)
    view = console.run(version_view, console.manager, console.monitor, name="wine", version=1)
    label = feature(view.outputs, "label")
    assert label.kind == "categorical"
    assert label.chart.series == ("reference", "live")
    labels = [t.find(f"{SVG}title") for t in elements(label.chart).iter(f"{SVG}text")]
    assert {"0", "1", "2"} <= {t.tail for t in labels if t is not None}  # shown after <title>
    assert len(series(label.chart, "live").findall(f"{SVG}rect")) >= 3


def test_unknown_models_versions_and_rollouts_are_not_found(console: Console) -> None:
    for name, version in (("affine", 9), ("nope", 1), ("../etc", 1)):
        with pytest.raises(NotFoundError):
            console.run(version_view, console.manager, console.monitor, name=name, version=version)
    with pytest.raises(NotFoundError, match="no rollout"):
        console.run(
            rollout_view, console.manager, console.monitor, console.controller, name="affine"
        )


def roll_out(console: Console, version: int, done: Callable[[dict[str, Any]], bool]) -> None:
    """Start a rollout on `canaried` and send stable-like calls until its state is `done`."""
    response = console.client.post(
        "/admin/models/canaried/rollout",
        headers=ADMIN,
        json={"version": version, "config": FAST_ROLLOUT, "reason": "console test"},
    )
    assert response.status_code == 201, response.text
    deadline, key = time.monotonic() + 30, 0
    while True:
        key += 1
        console.infer("canaried", RNG.normal(size=(10, 4)), key=f"u{key}")
        state = console.client.get("/admin/models/canaried/rollout", headers=ADMIN).json()
        if done(state):
            return
        assert time.monotonic() < deadline, state


def test_rollout_page_shows_a_rollback_with_its_failing_gate(console: Console) -> None:
    roll_out(console, 1, lambda s: s["status"] != "running")  # v1 adds 1 where stable adds 2
    view = console.run(
        rollout_view, console.manager, console.monitor, console.controller, name="canaried"
    )
    assert (view.status, view.version, view.stable, view.weight) == ("rolled_back", 1, 2, "0%")
    assert view.status_class == "status-drift"
    numbers = [e.number for e in view.evaluations]
    assert numbers == list(range(view.evaluated, 0, -1))  # every one kept, newest first
    newest = view.evaluations[0]
    assert (newest.verdict, newest.outcome) == ("fail", "rolled back")
    assert "output_divergence" in newest.failing
    for gate in newest.gates:
        assert gate.failing == (gate.verdict == "fail")
        assert gate.evidence or gate.gate == "input_drift"
    divergence = next(g for g in newest.gates if g.gate == "output_divergence")
    assert "y[0]=" in divergence.evidence
    assert all(not g.failing for e in view.evaluations if e.verdict != "fail" for g in e.gates)
    dots = series(view.weights, "evaluations").findall(f"{SVG}circle")
    assert len(dots) == view.evaluated
    assert view.weights.series == ("weight", "evaluations")
    assert view.actions == ("promote",)  # no rollout to steer; the canary is at 0%

    comparison = view.comparison
    assert comparison is not None
    assert comparison.canary.calls > 0
    assert comparison.stable.calls > 0
    assert comparison.canary.error_rate == "0.00%"
    assert comparison.canary.p99.endswith(("ms", "s"))
    y0 = next(o for o in comparison.outputs if o.name == "y[0]")
    assert y0.chart.series == ("stable", "canary")
    assert y0.divergence
    # v1 adds 1 where stable adds 2: the canary's outputs sit left of stable's.
    assert centre(y0.chart, "canary") < centre(y0.chart, "stable") - 10


def test_rollout_page_shows_steps_up_and_the_promotion(console: Console) -> None:
    ModelRegistry(console.home / "models").register(  # v3: v2 again, a good canary
        "canaried",
        console.artifacts / "affine_v2.onnx",
        console.artifacts / "affine.parquet",
        target="label",
    )
    roll_out(console, 3, lambda s: s["status"] == "running")
    running = console.run(
        rollout_view, console.manager, console.monitor, console.controller, name="canaried"
    )
    assert running.status == "running"
    assert running.actions == ("pause", "abort", "promote", "rollback")
    assert running.next_evaluation
    assert running.steps == ("50%", "80%")
    deadline = time.monotonic() + 30
    while (state := console.client.get("/admin/models/canaried/rollout", headers=ADMIN).json())[
        "status"
    ] == "running":
        console.infer("canaried", RNG.normal(size=(20, 4)), key=f"p{time.monotonic()}")
        assert time.monotonic() < deadline, state
    view = console.run(
        rollout_view, console.manager, console.monitor, console.controller, name="canaried"
    )
    assert (view.status, view.weight, view.comparison, view.actions) == (
        "promoted",
        "100%",
        None,
        (),
    )
    outcomes = [e.outcome for e in view.evaluations]
    assert outcomes[0] == "promoted"
    assert "stepped up to 80%" in outcomes
    assert len(state["history"]) == state["evaluations"] == view.evaluated
    path = series(view.weights, "weight").find(f"{SVG}path")
    assert path is not None
    assert path.get("d", "").count("V") == 2  # 50% -> 80% -> 100%
