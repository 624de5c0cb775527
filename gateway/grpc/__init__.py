"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` over the same
data plane as REST, so the two protocols cannot drift apart; the transport only frames.

- `protos`: the vendored `open_inference_grpc.proto` (source and licence in VENDORED.md),
  compiled by grpcio-tools when the package is imported, into a descriptor pool of its own.
  Compiling at import rather than generating modules at build time keeps generated code
  out of the tree and out of every build step (an editable install, the Docker image and a
  wheel all serve the file as it is), at the cost of a few milliseconds per process.
- `codec`: messages to the data plane's request and back (typed and raw contents).
- `status`: the gRPC status code of every error, beside the HTTP one.
- `servicer`: the six calls, thin; `server`: the grpc.aio server with `grpc.health.v1` and,
  when asked for, reflection, started and stopped with the app in every worker.
"""

from gateway.grpc.codec import GRPC
from gateway.grpc.server import GrpcServer, ReadinessHealth
from gateway.grpc.servicer import InferenceServicer
from gateway.grpc.status import GRPC_STATUS, grpc_status

__all__ = [
    "GRPC",
    "GRPC_STATUS",
    "GrpcServer",
    "InferenceServicer",
    "ReadinessHealth",
    "grpc_status",
]
