"""The transport-agnostic core: metadata, readiness and inference, knowing nothing of HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import numpy as np

from gateway.deployments import DeploymentManager
from gateway.errors import GatewayError, NotFoundError, ServiceUnavailableError
from gateway.protocol import (
    InferenceRequest,
    MetadataTensor,
    ModelMetadata,
    ModelReady,
    ServerMetadata,
    ServerReady,
)
from gateway.repository import LoadedVersion, ModelRepository
from gateway.routing import Route, Router
from gateway.shadows import ShadowCopy, ShadowMirror
from gateway.tensors import decode_request, encode_response, input_arrays, requested_outputs
from gateway.version import driftgate_version
from monitor.drift import DriftMonitor, Sample
from monitor.inference_log import InferenceLog
from monitor.metrics import UNROUTED, GatewayMetrics
from monitor.sampling import is_sampled
from monitor.traffic import TrafficPanes
from registry import InvalidNameError, TensorSpec, parse_version
from registry.state import StateAuthenticationError

PLATFORM = "onnx_onnxv1"
EXTENSIONS = ["binary_tensor_data"]


class InferenceResult(msgspec.Struct, frozen=True):
    """An encoded response and what the transport needs to frame it."""

    body: bytes
    header_length: int | None  # set when the body carries binary output tensors
    model_version: int
    role: str
    request_id: str | None = None  # the request's `id`, for the access log


class Encoder(Protocol):
    """Encodes an infer call's (spec, array, as binary) outputs into a response body; returns
    the body and, for REST's binary extension, the length of its JSON header."""

    def __call__(
        self,
        *,
        model_name: str,
        model_version: int,
        request_id: str | None,
        outputs: Sequence[tuple[TensorSpec, np.ndarray, bool]],
    ) -> tuple[bytes, int | None]:
        """The encoded response."""
        ...


@dataclass(frozen=True, slots=True)
class Framing:
    """How one transport frames an infer call's tensors; the data plane decides the rest.

    REST (the default of `DataPlane.infer`) decodes JSON with the binary extension; gRPC
    (`gateway.grpc.codec`) decodes a `ModelInferRequest` message into the same request.
    """

    protocol: str
    """The `protocol` label of the call's metrics: `rest` or `grpc`."""
    decode: Callable[[Any, int | None], tuple[InferenceRequest, memoryview]]
    """(payload, header length) -> the request and its binary tensor data."""
    encode: Encoder


class Tensors(msgspec.Struct, frozen=True):
    """The decoded inputs and every output of one call (what the monitor samples)."""

    inputs: dict[str, np.ndarray]
    results: dict[str, np.ndarray]


class DataPlane:
    """Answers the Open Inference Protocol's calls over the deployed models."""

    # Steps that the traced data plane (gateway.tracing) wraps in spans; plain here.
    _decode = staticmethod(decode_request)
    _encode = staticmethod(encode_response)

    def __init__(
        self,
        *,
        repository: ModelRepository,
        router: Router,
        deployments: DeploymentManager,
        mirror: ShadowMirror,
        metrics: GatewayMetrics,
        monitor: DriftMonitor,
        traffic: TrafficPanes,
        sample_rate: Callable[[str], float],
        inference_log: InferenceLog | None = None,
    ) -> None:
        """`sample_rate(model)` is the fraction of a model's calls the monitor sees;
        `inference_log`, when given, records its share of the calls."""
        self.repository = repository
        self.router = router
        self.deployments = deployments
        self.mirror = mirror
        self.metrics = metrics
        self.monitor = monitor
        self.traffic = traffic
        self.sample_rate = sample_rate
        self.inference_log = inference_log
        # Bound methods: a subclass's steps (the traced data plane's spans) frame REST too.
        self._rest = Framing("rest", self._decode, self._encode)

    def server_metadata(self) -> ServerMetadata:
        """Name, version and extensions of this server."""
        return ServerMetadata(name="driftgate", version=driftgate_version(), extensions=EXTENSIONS)

    def server_ready(self) -> ServerReady:
        """Ready once started (startup finishes before the server listens), unless the state
        backend refuses the gateway's credentials: a configuration error, said in `error`.
        An unreachable backend does not count: the last known policy goes on serving."""
        error = self.deployments.state.error
        if isinstance(error, StateAuthenticationError):
            return ServerReady(ready=False, error=str(error))
        return ServerReady(ready=True)

    async def model_ready(self, name: str, version: str | None) -> ModelReady:
        """Whether the model (version) is loaded and can serve, loading it if needed; a
        version that cannot be served is not ready, with the reason in `error`.

        Raises:
            NotFoundError: an unknown model or version.
        """
        try:
            await self.resolve(name, version)
        except ServiceUnavailableError as exc:
            return ModelReady(name=name, ready=False, error=str(exc))
        return ModelReady(name=name, ready=True)

    async def resolve(
        self, name: str, version: str | None, key: str | None = None
    ) -> tuple[LoadedVersion, Route]:
        """The loaded version that answers for `name`: the path's version, else routed."""
        if self.router.policy(name) is None:
            await self.deployments.ensure(name)  # a model registered since startup
        if version is None:
            route = self.router.route(name, key)
        else:
            try:
                route = self.router.explicit(name, parse_version(version))
            except InvalidNameError as exc:
                raise NotFoundError(str(exc)) from exc
        loaded = await self.repository.get(name, route.version, routed=route.role != "explicit")
        return loaded, route

    async def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        """Signature and versions of a model (of one version when given)."""
        loaded, _ = await self.resolve(name, version)
        signature = loaded.manifest.signature
        versions = await asyncio.to_thread(self.repository.registry.versions, name)
        return ModelMetadata(
            name=name,
            versions=[str(number) for number in versions],
            platform=PLATFORM,
            inputs=[_tensor(spec) for spec in signature.inputs],
            outputs=[_tensor(spec) for spec in signature.outputs],
        )

    async def infer(
        self,
        name: str,
        version: str | None,
        body: Any,
        header_length: int | None,
        routing_key: str | None = None,
        *,
        framing: Framing | None = None,
    ) -> InferenceResult:
        """Decode, route, validate, run and encode one inference request; mirror it to the
        deployment's shadows without waiting for them. Counted and timed by route and
        protocol. `body` is what `framing` decodes: REST's bytes by default."""
        started = time.perf_counter()
        framing = self._rest if framing is None else framing
        route_metrics = None
        self.metrics.in_flight.inc()
        try:
            request, binary = framing.decode(body, header_length)
            key = routing_key if routing_key is not None else request.id
            loaded, route = await self.resolve(name, version, key)
            route_metrics = self.metrics.route(name, route.version, route.role, framing.protocol)
            result, tensors = await self._run(
                loaded, route, request, binary, key, encode=framing.encode, explicit=bool(version)
            )
            if is_sampled(self.sample_rate(name), name, key):
                sample = Sample(name, route.version, tensors.inputs, tensors.results, request.id)
                offered = self.monitor.offer(sample)
                (route_metrics.samples if offered else route_metrics.samples_dropped).inc()
            seconds = time.perf_counter() - started
            route_metrics.observe(200, seconds)
            self.traffic.record(name, route.version, 200, seconds)
            if self.inference_log is not None:  # off: this branch is all it costs
                self.inference_log.offer(
                    loaded.manifest,
                    role=route.role,
                    request_id=request.id,
                    routing_key=key,
                    inputs=tensors.inputs,
                    outputs=tensors.results,
                    latency=seconds,
                )
            return result
        except GatewayError as exc:
            seconds = time.perf_counter() - started
            if route_metrics is None:
                unrouted = self.metrics.route(UNROUTED, 0, "", framing.protocol)
                unrouted.observe(exc.status_code, seconds)
            else:
                route_metrics.observe(exc.status_code, seconds)
                self.traffic.record(name, route.version, exc.status_code, seconds)
            raise
        finally:
            self.metrics.in_flight.dec()

    async def _run(
        self,
        loaded: LoadedVersion,
        route: Route,
        request: InferenceRequest,
        binary: memoryview,
        key: str | None,
        *,
        encode: Encoder,
        explicit: bool,
    ) -> tuple[InferenceResult, Tensors]:
        manifest = loaded.manifest
        signature = manifest.signature
        arrays = input_arrays(request, binary, signature)
        wanted = requested_outputs(request, signature)
        # Every output is computed (ONNX Runtime mostly does anyway): shadows compare them all.
        specs = {spec.name: spec for spec in signature.outputs}
        outputs = list(specs)
        results = dict(zip(outputs, await loaded.runtime.predict(arrays, outputs), strict=True))
        if not explicit:
            for shadow in self.router.shadows(manifest.name, key):
                copy = ShadowCopy(manifest.name, shadow, arrays, outputs, list(results.values()))
                if not self.mirror.offer(copy):
                    self.metrics.shadow_dropped.labels(manifest.name).inc()
        encoded, json_length = encode(
            model_name=manifest.name,
            model_version=manifest.version,
            request_id=request.id,
            outputs=[(specs[output], results[output], as_binary) for output, as_binary in wanted],
        )
        result = InferenceResult(
            body=encoded,
            header_length=json_length,
            model_version=manifest.version,
            role=route.role,
            request_id=request.id,
        )
        return result, Tensors(arrays, results)


def _tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
