"""Helpers to build Open Inference Protocol request bodies in tests."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np


def json_input(name: str, array: np.ndarray, datatype: str) -> dict[str, Any]:
    """An input tensor with its data as a flat JSON array."""
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype,
        "data": array.reshape(-1).tolist(),
    }


def binary_body(
    inputs: list[tuple[str, np.ndarray, str]], **request: Any
) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body (JSON header + raw tensors) and its headers."""
    tensors, raw = [], []
    for name, array, datatype in inputs:
        data = (
            bytes_tensor(array)
            if datatype == "BYTES"
            else array.astype(array.dtype.newbyteorder("<")).tobytes()
        )
        tensors.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        )
        raw.append(data)
    header = json.dumps({"inputs": tensors, **request}).encode()
    return header + b"".join(raw), {"Inference-Header-Content-Length": str(len(header))}


def bytes_tensor(array: np.ndarray) -> bytes:
    """Triton's BYTES serialisation: 4-byte little-endian length, then the bytes."""
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def split_binary_response(body: bytes, header_length: int) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary section of a binary-extension response."""
    header: dict[str, Any] = json.loads(body[:header_length])
    return header, body[header_length:]
