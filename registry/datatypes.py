"""Open Inference Protocol datatypes and their ONNX Runtime and numpy equivalents."""

from __future__ import annotations

from typing import Final

import numpy as np

# ONNX Runtime's type strings (NodeArg.type) for each OIP datatype it can serve.
ORT_TO_OIP: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# numpy dtypes of each datatype; BYTES tensors are numpy object arrays of str.
OIP_TO_NUMPY: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

NUMERIC_DATATYPES: Final[frozenset[str]] = frozenset(OIP_TO_NUMPY) - {"BYTES", "BOOL"}


def numpy_to_oip(dtype: np.dtype[np.generic]) -> str:
    """The OIP datatype of a numpy dtype (str and object arrays are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    for datatype, candidate in OIP_TO_NUMPY.items():
        if candidate == dtype:
            return datatype
    raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
