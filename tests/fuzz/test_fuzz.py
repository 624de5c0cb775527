"""The fuzz tier: schemathesis against a real gateway on a loopback socket, once with the
gateway's own OpenAPI document and once with the Open Inference Protocol's REST
specification, with every response checked against the document it was generated from.

Any 5xx on client input fails, except the documented failure of a model inside ONNX Runtime
(`documented.py`). Runs are deterministic (fixed seed, deterministic generation, no example
database) and bounded by `max-examples` (`schemathesis.toml`), so each run sends the same
requests; `hooks.py` puts the admin and feedback tokens on their routes. Reproduce one run
by hand with the command that a failure prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from litestar.testing import TestClient

from registry import ModelRegistry
from tests.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN, running_gateway
from tests.fuzz.conftest import RUNS, FuzzRun
from tests.fuzz.documented import is_documented_model_failure
from tests.fuzz.hooks import ADMIN_TOKEN as ADMIN_TOKEN_ENV
from tests.fuzz.hooks import FEEDBACK_TOKEN as FEEDBACK_TOKEN_ENV

pytestmark = pytest.mark.fuzz

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG = HERE / "schemathesis.toml"
OIP_SPEC = ROOT / "tests" / "specs" / "open_inference_rest.yaml"
RUN_TIMEOUT_S = 150  # a safety net: a run takes well under a minute on two cores


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[str]:
    """`driftgate serve` over a registry of real models: affine (versions 1 and 2), identity
    (every datatype), lookup (fails inside ONNX Runtime past index 2) and the demo
    classifier. The names are in `schemathesis.toml`'s dictionaries."""
    home = tmp_path_factory.mktemp("fuzz")
    registry = ModelRegistry(home / "models")
    for model in ("affine.onnx", "affine_v2.onnx"):
        registry.register("affine", artifacts / model, artifacts / "affine.parquet", target="label")
    registry.register("identity", artifacts / "identity.onnx", artifacts / "identity.parquet")
    registry.register("lookup", artifacts / "lookup.onnx", artifacts / "lookup.csv")
    demo = artifacts / "demo"
    registry.register("demo", demo / "model.onnx", demo / "wine.parquet", target="target")
    with running_gateway(home) as url:
        yield url


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize("spec", ["gateway OpenAPI", "OIP REST"])
def test_no_5xx_and_responses_as_documented(
    spec: str, gateway: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if spec == "gateway OpenAPI":
        location = [f"{gateway}/docs/openapi.json"]
    else:
        location = [str(OIP_SPEC), "--url", gateway]
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"),
        *location,
        *("--workers", "1", "--no-color", "--report", "har,json", "--report-dir", str(tmp_path)),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
        ADMIN_TOKEN_ENV: ADMIN_TOKEN,
        FEEDBACK_TOKEN_ENV: FEEDBACK_TOKEN,
    }
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=tmp_path,  # where schemathesis would keep a cache or an example database
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - started
    print(result.stdout, result.stderr)  # shown when the test fails
    assert result.returncode == 0, f"schemathesis found failures:\n{result.stdout[-6000:]}"

    report = json.loads(next(tmp_path.glob("json-*.json")).read_text())
    entries = json.loads(next(tmp_path.glob("har-*.json")).read_text())["log"]["entries"]
    run = FuzzRun(
        spec=spec,
        operations=report["operations"]["total"],
        requests=len(entries),
        seconds=seconds,
        statuses=Counter(entry["response"]["status"] for entry in entries),
    )
    failures = []
    for entry in entries:
        status = entry["response"]["status"]
        if status < 500:
            continue
        path = unquote(urlsplit(entry["request"]["url"]).path)
        body = entry["response"]["content"].get("text", "").encode()
        if is_documented_model_failure(path, status, body):
            run.model_failures += 1
        else:
            failures.append(f"{entry['request']['method']} {path}: {status} {body[:200]!r}")
    request.config.stash.setdefault(RUNS, []).append(run)
    assert not failures, "5xx on client input:\n" + "\n".join(failures)
    assert report["operations"]["tested"] == run.operations, report["operations"]
    assert report["test_cases"]["errored"] == 0, report["test_cases"]
    assert run.requests >= 10 * run.operations  # it did fuzz, not just load the document


def test_only_the_documented_model_failure_is_excused(client: TestClient[Any]) -> None:
    index = {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [7]}]}
    failed = client.post("/v2/models/lookup/infer", json=index)
    assert failed.status_code == 500
    assert is_documented_model_failure("/v2/models/lookup/infer", 500, failed.content)
    assert is_documented_model_failure("/v2/models/lookup/versions/1/infer", 500, failed.content)
    # the same text anywhere else, another status, or another 500 is not excused
    assert not is_documented_model_failure("/v2/models/affine/infer", 500, failed.content)
    assert not is_documented_model_failure("/v2/models/lookup/infer", 503, failed.content)
    internal = b'{"error":"internal error: KeyError: 1"}'
    assert not is_documented_model_failure("/v2/models/lookup/infer", 500, internal)
