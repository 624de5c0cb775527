"""The vendored `open_inference_grpc.proto`, compiled when this module is imported.

grpcio-tools' protoc turns the file into descriptors, which go into a descriptor pool of
this module's own rather than protobuf's default one: a process that also imports another
copy of the same protocol (tritonclient's, KServe's or MLServer's generated modules all
define `inference.ModelInferRequest`) would otherwise fail on the duplicate names. The
message classes are made from that pool, and the service's handlers are registered by
hand (`gateway.grpc.servicer`), so no generated module is needed at all.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

PROTO = Path(__file__).with_name("open_inference_grpc.proto")
SERVICE = "inference.GRPCInferenceService"
"""The full name of the service, as clients address it."""


def _compile(proto: Path) -> descriptor_pb2.FileDescriptorSet:
    """The file's descriptors, from protoc (which writes them to a file, hence the folder)."""
    includes = resources.files("grpc_tools") / "_proto"  # protoc's well-known types
    with tempfile.TemporaryDirectory(prefix="driftgate-proto-") as folder:
        out = Path(folder) / "descriptors.pb"
        status = protoc.main(
            [
                "protoc",
                f"--proto_path={proto.parent}",
                f"--proto_path={includes}",
                f"--descriptor_set_out={out}",
                proto.name,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc could not compile {proto} (exit {status})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


POOL = descriptor_pool.DescriptorPool()
"""The pool that holds the protocol's descriptors (and, with reflection on, the others)."""
for _file in _compile(PROTO).file:
    POOL.Add(_file)


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest = _message("ServerLiveRequest")
ServerLiveResponse = _message("ServerLiveResponse")
ServerReadyRequest = _message("ServerReadyRequest")
ServerReadyResponse = _message("ServerReadyResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ServerMetadataRequest = _message("ServerMetadataRequest")
ServerMetadataResponse = _message("ServerMetadataResponse")
ModelMetadataRequest = _message("ModelMetadataRequest")
ModelMetadataResponse = _message("ModelMetadataResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
InferParameter = _message("InferParameter")
InferTensorContents = _message("InferTensorContents")
