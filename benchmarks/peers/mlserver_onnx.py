"""The gRPC peer: ONNX Runtime as an MLServer custom runtime, written as MLServer's docs
teach (an `MLModel` with `load` and `predict`, tensors through its `NumpyCodec`).

MLServer has no ONNX runtime of its own. This file runs inside MLServer's own virtual
environment (`benchmarks/mlserver.py` makes it: MLServer's pins conflict with driftgate's),
copied next to the model, where `model-settings.json` names it
(`"implementation": "mlserver_onnx.OnnxModel"`). Like the gateway's, the session runs one
intra-op thread.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):  # type: ignore[misc]  # MLServer is not installed beside driftgate
    """One ONNX model, answering the Open Inference Protocol."""

    async def load(self) -> bool:
        """Open the session on the model file the settings' `uri` names."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, options)
        self._outputs = [output.name for output in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run the model on the request's tensors."""
        feeds: dict[str, Any] = {
            tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs
        }
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(name, array)
                for name, array in zip(self._outputs, results, strict=True)
            ],
        )
