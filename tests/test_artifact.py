"""ONNX external data is refused: a model could otherwise read files of the gateway's working
directory (its configuration, its audit log) and serve their bytes through infer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from litestar.testing import TestClient
from onnx import TensorProto, helper

from gateway.runtime import OnnxRuntime
from registry import InvalidModelError, ModelRegistry
from registry.artifact import check_self_contained
from registry.signature import open_session, read_signature
from tests.conftest import ADMIN_TOKEN
from tests.models import OPSET

SECRET = b'tokens = "ops:admin:hunter2"\n'


def _external(name: str, location: str, size: int) -> onnx.TensorProto:
    """A UINT8 tensor whose bytes live in `location`, relative to wherever ORT looks."""
    tensor = onnx.TensorProto(name=name, data_type=TensorProto.UINT8, dims=[size])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(size)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def leaking_model(location: str = "driftgate.toml", size: int = len(SECRET)) -> bytes:
    """`y = x + sum(bytes of location)`: a working model that reads a file next to the
    gateway (x: FP32 [batch, 1])."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["secret"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["as_float"], ["total"], keepdims=1),
            helper.make_node("Add", ["x", "total"], ["y"]),
        ],
        "leak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[_external("secret", location, size)],
    )
    model: bytes = helper.make_model(graph, opset_imports=OPSET).SerializeToString()
    return model


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The gateway's working directory, holding its configuration (with tokens)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "driftgate.toml").write_bytes(SECRET)
    (tmp_path / "leak.onnx").write_bytes(leaking_model())
    pl.DataFrame({"x": np.arange(50, dtype=np.float32)}).write_parquet(tmp_path / "ref.parquet")
    return tmp_path


def test_registration_refuses_external_data(workdir: Path) -> None:
    registry = ModelRegistry(workdir / "models")
    with pytest.raises(InvalidModelError, match="'secret' keeps its data in an external file"):
        registry.register("leak", workdir / "leak.onnx", workdir / "ref.parquet")
    assert registry.models() == []


def test_upload_refuses_external_data(workdir: Path) -> None:
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings(home=workdir, tokens=f"ops:admin:{ADMIN_TOKEN}")
    with TestClient(app=create_app(settings)) as client:
        response = client.post(
            "/admin/models/leak/versions",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            files={
                "model": ("m.onnx", leaking_model()),
                "reference": ("r.parquet", (workdir / "ref.parquet").read_bytes()),
            },
        )
    assert response.status_code == 400
    assert "external file" in response.json()["error"]
    assert "save_as_external_data=False" in response.json()["error"]


def test_loading_refuses_external_data(workdir: Path, artifacts: Path) -> None:
    """A version registered before the check (its checksum matches) still never loads."""
    signature = read_signature(open_session((artifacts / "passthrough.onnx").read_bytes()))
    with (
        ThreadPoolExecutor(1) as executor,
        pytest.raises(InvalidModelError, match="external file"),
    ):
        OnnxRuntime(leaking_model(), signature, executor, intra_op_threads=1)


def _in_subgraph() -> onnx.ModelProto:
    branch = helper.make_graph(
        [helper.make_node("Cast", ["secret"], ["out"], to=TensorProto.FLOAT)],
        "then",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
        initializer=[_external("secret", "state/audit.jsonl", 4)],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        "if",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    return helper.make_model(graph, opset_imports=OPSET)


def _in_constant() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=_external("v", "driftgate.toml", 4))],
        "constant",
        [],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [4])],
    )
    return helper.make_model(graph, opset_imports=OPSET)


@pytest.mark.parametrize("model", [_in_subgraph(), _in_constant()], ids=["subgraph", "constant"])
def test_external_data_is_found_wherever_it_hides(model: onnx.ModelProto) -> None:
    with pytest.raises(InvalidModelError, match="external file"):
        check_self_contained(model.SerializeToString())


def test_self_contained_models_pass(artifacts: Path) -> None:
    for name in ("affine.onnx", "identity.onnx", "lookup.onnx"):
        check_self_contained((artifacts / name).read_bytes())
