"""Open Inference Protocol (REST) messages as msgspec Structs.

Decoding goes straight from bytes into these types; anything that does not fit (a missing
`inputs`, a negative dimension) is refused by the decoder with the JSON path of the problem.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Parameters = dict[str, Any]
Dimension = Annotated[int, msgspec.Meta(ge=0)]


class RequestInput(msgspec.Struct, kw_only=True):
    """One input tensor of an inference request."""

    name: str
    shape: list[Dimension]
    datatype: str
    parameters: Parameters | None = None
    data: Any = None  # nested or flat JSON array; absent when sent as binary data


class RequestOutput(msgspec.Struct, kw_only=True):
    """An output the caller asks for (and how: `binary_data`)."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(msgspec.Struct, kw_only=True):
    """The body (or the JSON header, with binary data) of an infer call."""

    inputs: list[RequestInput]
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[RequestOutput] | None = None


class ResponseOutput(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One output tensor of an inference response."""

    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body (or the JSON header, with binary data) of an infer response."""

    model_name: str
    model_version: str
    outputs: list[ResponseOutput]
    id: str | None = None
    parameters: Parameters | None = None


class MetadataTensor(msgspec.Struct, kw_only=True):
    """Name, datatype and shape (-1 for variable) of a model tensor."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(msgspec.Struct, kw_only=True):
    """`GET /v2/models/{name}[/versions/{version}]`."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(msgspec.Struct, kw_only=True):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class ServerLive(msgspec.Struct, kw_only=True):
    """`GET /v2/health/live`."""

    live: bool


class ServerReady(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`GET /v2/health/ready`."""

    ready: bool
    error: str | None = None  # why it is not ready


class ModelReady(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`GET /v2/models/{name}[/versions/{version}]/ready`."""

    name: str
    ready: bool
    error: str | None = None  # why it is not ready


class ErrorResponse(msgspec.Struct, kw_only=True):
    """Every error body: what went wrong and what to fix."""

    error: str
