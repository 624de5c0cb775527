"""The peer: ONNX Runtime behind FastAPI + pydantic, written the way FastAPI's docs teach.

This is what a user writes without a serving gateway, so it is the bar the gateway must
clear: pydantic models for the request and response bodies and a module-level session. It
comes in the two shapes FastAPI's docs show, as two apps over the same session:

- `app`: a plain `def` endpoint, which FastAPI runs in its thread pool, as its docs advise
  for blocking calls such as `session.run`;
- `async_app`: an `async def` endpoint, which runs on the event loop, no hand-off.

Both take the same Open Inference Protocol JSON body as the gateway and answer every output
with its OIP datatype (the classifier's `label` INT64, `probabilities` FP32). Serve one
with `uvicorn benchmarks.peers.fastapi_onnx:app` (or `:async_app`) and the model file in
`BENCH_ONNX_MODEL` (its name in `BENCH_MODEL_NAME`, default `classifier`).

The one departure from the docs: the session runs one intra-op thread, as the gateway's
does. ONNX Runtime's default, a thread per core, would put a spinning second thread on the
one core the server is pinned to and measure that rather than the web stack.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "classifier")
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
session = ort.InferenceSession(os.environ["BENCH_ONNX_MODEL"], _options)
output_names = [output.name for output in session.get_outputs()]
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
"""numpy dtype -> OIP datatype, for the outputs these models have."""


class InputTensor(BaseModel):
    """One input tensor: flat data and its shape."""

    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferenceRequest(BaseModel):
    """The request body."""

    inputs: list[InputTensor]


class OutputTensor(BaseModel):
    """One output tensor; integers first, so that an INT64 output stays integers."""

    name: str
    shape: list[int]
    datatype: str
    data: list[int] | list[float]


class InferenceResponse(BaseModel):
    """The response body."""

    model_name: str
    outputs: list[OutputTensor]


def ready() -> dict[str, bool]:
    """Ready once the module (and so the session) has loaded."""
    return {"ready": True}


def run_model(model_name: str, request: InferenceRequest) -> InferenceResponse:
    """Run the model on the request's tensors."""
    if model_name != MODEL_NAME:
        raise HTTPException(status_code=404, detail=f"unknown model {model_name}")
    feeds = {
        tensor.name: np.array(tensor.data, dtype=np.float32).reshape(tensor.shape)
        for tensor in request.inputs
    }
    results = session.run(output_names, feeds)
    return InferenceResponse(
        model_name=model_name,
        outputs=[
            OutputTensor(
                name=name,
                shape=list(value.shape),
                datatype=DATATYPES[value.dtype],
                data=value.ravel().tolist(),
            )
            for name, value in zip(output_names, results, strict=True)
        ],
    )


app = FastAPI()
app.get("/v2/health/ready")(ready)


@app.post("/v2/models/{model_name}/infer")
def infer(model_name: str, request: InferenceRequest) -> InferenceResponse:
    """Run the model in FastAPI's thread pool."""
    return run_model(model_name, request)


async_app = FastAPI()
async_app.get("/v2/health/ready")(ready)


@async_app.post("/v2/models/{model_name}/infer")
async def infer_async(model_name: str, request: InferenceRequest) -> InferenceResponse:
    """Run the model on the event loop."""
    return run_model(model_name, request)
