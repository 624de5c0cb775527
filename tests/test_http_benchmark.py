"""The http benchmark's model, answer check, FastAPI peers and arithmetic, with real parts:
the classifier trained and exported as the benchmark does, the gateway's real app and the
peers' real apps answering the benchmark's request."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from litestar.testing import TestClient

from benchmarks import datasets, http_peers
from benchmarks import http_summary as summary
from benchmarks.http_peers import FASTAPI, FASTAPI_ASYNC
from benchmarks.models import (
    CLASSIFIER,
    OrtLimit,
    Tensor,
    build_artifacts,
    check_answer,
    infer_body,
    ort_limit,
    register_all,
    request_row,
)
from benchmarks.report import Check, Report, check, format_report, machine_info
from benchmarks.scenario import BenchmarkError, available_scenarios
from benchmarks.servers import post, serving
from benchmarks.workers import core_layout
from benchmarks.wrk import Latency, WrkResult
from gateway.app import create_app
from gateway.settings import Settings


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classifier and its reference data, built as a benchmark run builds them."""
    return build_artifacts(tmp_path_factory.mktemp("artifacts"), [CLASSIFIER])[CLASSIFIER]


@pytest.fixture(scope="module")
def expected(classifier: Path) -> OrtLimit:
    return ort_limit(classifier, request_row(CLASSIFIER), calls=20, cpu=None)


def test_classifier_answers_a_label_and_probabilities(expected: OrtLimit) -> None:
    label, probabilities = expected.outputs
    assert (label.name, label.datatype, label.shape) == ("label", "INT64", [1])
    assert (probabilities.name, probabilities.datatype, probabilities.shape) == (
        "probabilities",
        "FP32",
        [1, 2],
    )
    assert label.data == [int(np.argmax(probabilities.data))]
    # Not a saturated answer: a server giving other probabilities could not pass.
    assert 0.6 < max(probabilities.data) < 0.99


def test_request_row_is_a_row_of_the_data_set() -> None:
    data = datasets.load("breast_cancer").data
    row = request_row(CLASSIFIER)
    assert len(row) == 30
    assert any(np.array_equal(row, candidate) for candidate in data)
    body = msgspec.json.decode(infer_body(row))
    assert body["inputs"][0]["shape"] == [1, 30]


def test_the_gateway_answers_the_model_outputs(
    tmp_path: Path, classifier: Path, expected: OrtLimit
) -> None:
    register_all(tmp_path, {CLASSIFIER: classifier})
    with TestClient(app=create_app(Settings(home=tmp_path))) as client:
        response = client.post(
            f"/v2/models/{CLASSIFIER}/infer",
            content=infer_body(request_row(CLASSIFIER)),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    check_answer("gateway", response.content, expected.outputs)


@pytest.mark.parametrize("peer", [FASTAPI, FASTAPI_ASYNC])
def test_fastapi_peers_answer_int64_labels_and_fp32_probabilities(
    tmp_path: Path, classifier: Path, expected: OrtLimit, peer: str
) -> None:
    # As the benchmark runs it: its own uvicorn process, over a socket.
    (server,) = http_peers.peers(
        [peer], root=tmp_path, model=classifier, model_name=CLASSIFIER, cache=tmp_path
    )
    with serving(server, cpu=None, log=tmp_path / "peer.log") as running:
        answer = post(
            f"{running.url}/v2/models/{CLASSIFIER}/infer", infer_body(request_row(CLASSIFIER))
        )
    check_answer(peer, answer, expected.outputs)


def _answer(*outputs: dict[str, object]) -> bytes:
    return msgspec.json.encode({"model_name": CLASSIFIER, "outputs": list(outputs)})


LABEL = Tensor(name="label", datatype="INT64", shape=[1], data=[1])
PROBABILITIES = Tensor(name="probabilities", datatype="FP32", shape=[1, 2], data=[0.25, 0.75])


def test_check_answer_accepts_float32_rounding_and_a_column_for_a_vector() -> None:
    answer = _answer(
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.2500001, 0.75]},
        # MLServer's NumpyCodec answers a vector as a column.
        {"name": "label", "datatype": "INT64", "shape": [1, 1], "data": [1]},
    )
    check_answer("server", answer, [LABEL, PROBABILITIES])


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ({"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}, "label = [0]"),
        ({"name": "label", "datatype": "INT64", "shape": [1], "data": [1.0]}, "label = [1.0]"),
        ({"name": "label", "datatype": "FP32", "shape": [1], "data": [1]}, "as FP32"),
        ({"name": "label", "datatype": "INT64", "shape": [1, 2], "data": [1]}, "[1, 2]"),
        ({"name": "y", "datatype": "INT64", "shape": [1], "data": [1]}, "no output 'label'"),
    ],
)
def test_check_answer_refuses_another_answer(label: dict[str, object], reason: str) -> None:
    probabilities = {"name": "probabilities", "datatype": "FP32", "shape": [1, 2]}
    answer = _answer(label, {**probabilities, "data": [0.25, 0.75]})
    with pytest.raises(BenchmarkError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        check_answer("server", answer, [LABEL, PROBABILITIES])


def test_check_answer_refuses_other_probabilities() -> None:
    answer = _answer(
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.3, 0.7]},
    )
    with pytest.raises(BenchmarkError, match="probabilities"):
        check_answer("server", answer, [LABEL, PROBABILITIES])


def _run(
    server: str, connections: int, cpu_us: float, p50_us: float = 500.0
) -> summary.Measurement:
    """A 1 s run of 1,000 requests that used `cpu_us` per request."""
    latency = Latency(mean=p50_us, p50=p50_us, p90=p50_us, p99=p50_us, max=p50_us)
    result = WrkResult(
        requests=1000, duration_us=1_000_000, socket_errors=0, status_errors=0, latency_us=latency
    )
    return summary.measurement(server, connections, result, cpu_seconds=cpu_us * 1000 / 1e6)


ROLES = {
    "raw-hello": "limit",
    "gateway": "subject",
    "fastapi": "peer",
    "fastapi-async": "peer",
    "mlserver": "peer",
    "kserve": "peer",
}


def _checks(cpu_us: dict[str, float]) -> dict[str, Check]:
    runs = [_run(server, 64, cpu) for server, cpu in cpu_us.items()]
    return {item.name: item for item in summary.checks(runs, 20.0, ROLES)}


def test_the_peer_is_the_one_with_the_least_cpu_per_request() -> None:
    found = _checks(
        {"raw-hello": 40, "gateway": 100, "fastapi": 400, "fastapi-async": 300, "mlserver": 700}
    )
    peer = found["fastest peer (fastapi-async) CPU/req / gateway's at 64 conn"]
    assert peer.value == pytest.approx(3.0)
    assert peer.met
    mlserver = found["mlserver CPU/req / gateway's at 64 conn"]
    assert mlserver.value == pytest.approx(7.0)
    assert mlserver.met
    limit = found["gateway CPU/req / raw-hello's at 64 conn"]
    assert limit.value == pytest.approx(2.5)
    assert limit.met
    assert not found["gateway CPU/req / raw-hello's at 64 conn (stretch)"].met


def test_targets_are_missed_by_a_margin() -> None:
    found = _checks({"raw-hello": 40, "gateway": 200, "fastapi": 400, "mlserver": 1000})
    assert not found["fastest peer (fastapi) CPU/req / gateway's at 64 conn"].met
    assert not found["mlserver CPU/req / gateway's at 64 conn"].met
    assert not found["gateway CPU/req / raw-hello's at 64 conn"].met


def test_the_table_has_every_server_and_its_cpu_ratios() -> None:
    runs = [
        _run("raw-hello", 1, 40, 50),
        _run("gateway", 1, 100, 200),
        _run("fastapi", 1, 400, 900),
        _run("raw-hello", 64, 40),
        _run("gateway", 64, 100),
        _run("fastapi", 64, 300),
    ]
    table, limits = summary.tables(runs, 20.0, ROLES, "title")
    ratios = {(row[0], row[1]): (row[6], row[7]) for row in table.rows}
    assert ratios[("gateway", 64)] == pytest.approx((2.5, 1.0))
    assert ratios[("fastapi", 64)] == pytest.approx((7.5, 3.0))
    assert limits.rows[-1][-1] == "fastapi"
    found = {item.name: item for item in summary.checks(runs, 20.0, ROLES)}
    # 2 x (0.05 ms + 0.02 ms) = 0.14 ms, and the gateway took 0.2 ms.
    p50 = found["gateway p50 ms at 1 conn (<= 2 x (raw-hello p50 + ORT))"]
    assert p50.target == pytest.approx(0.14)
    assert not p50.met


def test_verdicts_print_pass_or_miss_with_the_margin() -> None:
    checks = [
        check("more is better, passed", 3.0, 2.5, at_least=True),
        check("more is better, missed", 2.0, 2.5, at_least=True),
        check("less is better, passed", 2.0, 2.5, at_least=False),
        check("less is better, missed", 3.0, 2.5, at_least=False),
    ]
    report = Report(scenario="http", machine=machine_info(), options={}, tables=[], checks=checks)
    lines = format_report(report).splitlines()
    verdicts = {item.name: line for item in checks for line in lines if item.name in line}
    assert verdicts["more is better, passed"].endswith("PASS by 20%")
    assert verdicts["more is better, missed"].endswith("MISS by 20%")
    assert verdicts["less is better, passed"].endswith("PASS by 20%")
    assert verdicts["less is better, missed"].endswith("MISS by 20%")


def test_workers_keep_a_core_for_wrk() -> None:
    many = core_layout([1, 2, 4, 8], list(range(16)), explicit=False)
    assert many.counts == [1, 2, 4, 8]
    assert many.server_cpus(4) == [0, 1, 2, 3]
    assert many.load_cpus == list(range(8, 16))
    assert many.load_threads == 8
    few = core_layout([1, 2, 4, 8], [0, 1], explicit=False)
    assert few.counts == [1]
    assert few.load_cpus == [1]
    asked = core_layout([1, 2], [0, 1], explicit=True)
    assert asked.counts == [1, 2]
    assert asked.server_cpus(2) is None
    assert asked.load_cpus is None
    assert asked.load_threads == 2


def test_workers_is_a_listed_scenario() -> None:
    assert "workers" in dict(available_scenarios())
