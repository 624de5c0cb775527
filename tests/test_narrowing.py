"""JSON numbers that a model's narrower datatype would change silently are refused (400,
saying what to fix), not rounded, truncated or turned into inf."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.oip import json_input
from tests.test_inference import _typed_arrays

Client = TestClient[Any]


def _infer(client: Client, name: str, data: list[Any]) -> Any:
    """Call the identity model with every input typical, and `in_<name>` set to `data`."""
    typed = _typed_arrays()
    inputs = [json_input(f"in_{key}", array, datatype) for key, (array, datatype) in typed.items()]
    for tensor in inputs:
        if tensor["name"] == f"in_{name}":
            tensor["data"] = data
    return client.post("/v2/models/identity/infer", json={"inputs": inputs})


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("fp16", [1e6, 0, 0], "out of the range of FP16 (-65504 to 65504)"),
        ("fp32", [1e39, 0, 0], "out of the range of FP32"),
        ("int8", [1.5, 0, 0], "INT8 takes whole numbers, not 1.5; round the data"),
        ("int8", [200, 0, 0], "out of the range of INT8 (-128 to 127)"),
        ("uint16", [-1, 0, 0], "out of the range of UINT16 (0 to 65535)"),
        ("int64", [2.0**63, 0, 0], "out of the range of INT64"),
    ],
    ids=["fp16 overflow", "fp32 overflow", "int8 fraction", "int8 range", "uint16", "int64"],
)
def test_narrowing_that_would_change_values_is_refused(
    client: Client, name: str, data: list[Any], message: str
) -> None:
    response = _infer(client, name, data)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert "scale the data" in response.json()["error"] or "round" in response.json()["error"]


def test_values_that_fit_are_accepted(client: Client) -> None:
    """Whole floats for integers, and values within a float's range, convert exactly."""
    for name, data, expected in [
        ("int32", [1.0, -2.0, 3.0], [1, -2, 3]),
        ("fp16", [65504.0, -0.5, 1e-3], [65504.0, -0.5, 0.0010004043579101562]),
        ("uint64", [2**63, 0, 1], [2**63, 0, 1]),
    ]:
        response = _infer(client, name, data)
        assert response.status_code == 200, response.text
        outputs = {out["name"]: out["data"] for out in response.json()["outputs"]}
        assert outputs[f"out_{name}"] == expected
