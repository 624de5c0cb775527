"""Reading a model's input/output signature from its ONNX graph."""

from __future__ import annotations

import onnxruntime as ort

from registry.artifact import check_self_contained
from registry.datatypes import ORT_TO_OIP
from registry.errors import InvalidModelError
from registry.manifest import Signature, TensorSpec


def open_session(model: bytes, *, intra_op_threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session over the model bytes (the bytes already verified), which
    must hold the whole model (`registry.artifact`): at registration and at every load."""
    check_self_contained(model)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.load_model_format", "ONNX")  # as checked
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise InvalidModelError(f"ONNX Runtime cannot load the model: {exc}") from exc


def read_signature(session: ort.InferenceSession) -> Signature:
    """The OIP signature of a session's graph; rejects non-tensor inputs and outputs."""
    return Signature(
        inputs=tuple(_spec(arg, "input") for arg in session.get_inputs()),
        outputs=tuple(_spec(arg, "output") for arg in session.get_outputs()),
    )


def _spec(arg: ort.NodeArg, kind: str) -> TensorSpec:
    datatype = ORT_TO_OIP.get(arg.type)
    if datatype is None:
        hint = " (for scikit-learn classifiers convert with options={'zipmap': False})"
        raise InvalidModelError(
            f"{kind} {arg.name!r} has type {arg.type}, which the Open Inference Protocol "
            f"cannot carry{hint if 'map' in arg.type or 'seq' in arg.type else ''}"
        )
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)
