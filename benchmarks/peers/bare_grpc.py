"""The limit for a Python gRPC server: a bare grpc.aio servicer that answers a fixed response.

No protocol work at all: ModelInfer takes the request's bytes and answers the same
pre-serialized `ModelInferResponse` (one FP32 output), on uvloop, the event loop the
gateway's workers run. ServerReady answers ready, so the benchmark can wait for it. Serve
it with `python -m benchmarks.peers.bare_grpc PORT`.
"""

from __future__ import annotations

import sys
from typing import Any

SERVICE = "inference.GRPCInferenceService"
# ModelInferResponse{model_name: "mlp", model_version: "1", outputs: [{name: "y",
# datatype: "FP32", shape: [1, 1]}], raw_output_contents: [4 bytes]}, serialized by hand
# so that this server imports no protobuf module at all.
_OUTPUT = b"\n\x01y\x12\x04FP32\x1a\x02\x01\x01"
RESPONSE = b"\n\x03mlp\x12\x011*" + bytes([len(_OUTPUT)]) + _OUTPUT + b"2\x04\x00\x00\x80?"
READY = b"\x08\x01"  # ServerReadyResponse{ready: true}


async def model_infer(request: bytes, context: Any) -> bytes:
    """Whatever the request, the fixed response."""
    return RESPONSE


async def server_ready(request: bytes, context: Any) -> bytes:
    """Always ready."""
    return READY


async def serve(port: int) -> None:
    """Serve on loopback until killed."""
    import grpc

    server = grpc.aio.server()
    server.add_registered_method_handlers(
        SERVICE,
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer),
            "ServerReady": grpc.unary_unary_rpc_method_handler(server_ready),
        },
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
