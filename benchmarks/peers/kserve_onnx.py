"""A peer: ONNX Runtime as a KServe custom model, written as KServe's docs teach (a
`kserve.Model` with `load` and `predict` over the v2 protocol's `InferRequest` and
`InferResponse`, served by `kserve.ModelServer().start([model])`).

KServe has no ONNX runtime of its own outside Triton. This file runs inside KServe's own
virtual environment (`benchmarks/kserve.py` makes it: KServe's pins conflict with
driftgate's), as `python kserve_onnx.py --model_name NAME --model_path FILE` plus
ModelServer's own options (`--http_port`, `--workers`, `--enable_grpc`, ...). Like the
gateway's, the session runs one intra-op thread.

KServe's REST server listens on every interface (its uvicorn host is fixed to 0.0.0.0),
unlike the benchmark's other servers, which listen on loopback only.
"""

from __future__ import annotations

import argparse
import logging

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid


class OnnxModel(Model):  # type: ignore[misc]  # KServe is not installed beside driftgate
    """One ONNX model, answering the Open Inference Protocol (KServe's v2)."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.ready = False

    def load(self) -> bool:
        """Open the session on the model file."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options)
        self.outputs = [output.name for output in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        """Run the model on the request's tensors."""
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        results = self.session.run(self.outputs, feeds)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[
                InferOutput(
                    name=name,
                    shape=list(value.shape),
                    datatype=from_np_dtype(value.dtype),
                    data=value,
                )
                for name, value in zip(self.outputs, results, strict=True)
            ],
            response_id=generate_uuid(),
        )


def main() -> None:
    """Load the model and serve it until stopped."""
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True, help="the ONNX file")
    args, _ = parser.parse_known_args()
    model = OnnxModel(args.model_name, args.model_path)
    model.load()
    server = ModelServer()  # its options come from the command line, through its parser
    # No line per request, as for every server the benchmark runs: KServe's logging
    # configuration (set up by ModelServer()) logs uvicorn's access log at INFO.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
