"""The real server on a real socket, called by tritonclient and plain HTTP."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from registry import ModelRegistry

pytestmark = pytest.mark.e2e
README = Path(__file__).parents[1] / "README.md"
ROWS = np.array([[0.5, -1.0, 2.0, 3.5], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)


@pytest.fixture
def demo_home(home: Path, artifacts: Path) -> Path:
    """The test registry plus the demo model, as `make serve` registers it."""
    ModelRegistry(home / "models").register(
        "demo",
        artifacts / "demo" / "model.onnx",
        artifacts / "demo" / "wine.parquet",
        target="target",
    )
    return home


@pytest.fixture
def triton_client(live_server: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=live_server.removeprefix("http://"))


def test_tritonclient_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("affine")
    assert triton_client.is_model_ready("affine", "1")
    assert triton_client.get_server_metadata()["name"] == "driftgate"
    metadata = triton_client.get_model_metadata("affine")
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["versions"] == ["1", "2"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_tritonclient_infer(
    triton_client: triton.InferenceServerClient, binary: bool, compression: str | None
) -> None:
    tensor = triton.InferInput("x", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("y", binary_data=binary),
        triton.InferRequestedOutput("total", binary_data=not binary),
    ]
    result = triton_client.infer(
        "affine",
        [tensor],
        outputs=outputs,
        request_id="t-1",
        request_compression_algorithm=compression,
    )
    np.testing.assert_allclose(result.as_numpy("y"), ROWS + 2.0)
    np.testing.assert_allclose(result.as_numpy("total"), ROWS.sum(axis=1), rtol=1e-6)
    response = result.get_response()
    assert (response["id"], response["model_version"]) == ("t-1", "2")


def test_tritonclient_default_outputs_and_explicit_version(
    triton_client: triton.InferenceServerClient,
) -> None:
    tensor = triton.InferInput("x", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    result = triton_client.infer("affine", [tensor], model_version="1")
    np.testing.assert_allclose(result.as_numpy("y"), ROWS + 1.0)


def test_tritonclient_sees_errors(triton_client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"expects \[-1, 4\]"):
        triton_client.infer("affine", [tensor])
    with pytest.raises(InferenceServerException, match="not registered"):
        triton_client.infer("missing", [tensor])


def test_readme_examples_work_against_the_demo_model(demo_home: Path, live_server: str) -> None:
    text = README.read_text()
    curl = re.search(r"```sh\n(curl .*?)\n```", text, re.DOTALL)
    assert curl, "README has a curl example"
    args = shlex.split(curl.group(1).replace("\\\n", " "))
    url = args[-1] if args[-1].startswith("http") else next(a for a in args if a.startswith("http"))
    body = args[args.index("-d") + 1]
    response = httpx.post(url.replace("http://127.0.0.1:8000", live_server), content=body)
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "demo"
    assert response.json()["outputs"][0]["data"] == [0]

    python = re.search(r"```python\n(.*?)\n```", text, re.DOTALL)
    assert python, "README has a tritonclient example"
    code = python.group(1).replace("127.0.0.1:8000", live_server.removeprefix("http://"))
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["result"] is not None
