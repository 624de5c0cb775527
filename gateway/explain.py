"""Explanations per prediction, off the hot path: which features moved each output, and how
far, for a tabular model (one 2-D numeric input `[batch, features]`).

A call takes the body of an infer call, decoded and checked exactly as infer does, and
answers Shapley attributions (`gateway.attribution`) of every numeric output column (each
class probability of a classifier, the value of a regressor) against a background drawn
from the version's reference profile (`registry.distribution`): no training data is kept.

Bounded three ways, so explanations can never starve inference: at most `max_rows` rows
and `max_evaluations` model rows per call (413 past either, decided before any work); a
pool of `workers` threads of its own, each with its own single-threaded ONNX Runtime
session, refusing a call with 503 when every worker is busy rather than queueing it; and
a deadline, checked before every model run, that stops an explanation with 503.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import msgspec
import numpy as np
import onnxruntime as ort

from gateway.attribution import Floats, Method, Plan, load, plan, shapley
from gateway.dataplane import DataPlane
from gateway.errors import (
    BadRequestError,
    ModelRuntimeError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from gateway.settings import Settings
from gateway.tensors import decode_request, input_arrays
from registry import Manifest, ModelRegistry, NumericProfile, TensorSpec
from registry.datatypes import NUMERIC_DATATYPES, OIP_TO_NUMPY
from registry.distribution import background
from registry.signature import open_session

SESSIONS = 4  # versions whose explanation session is kept; each holds its model's weights


class ExplainLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one gateway process spends on explanations (see `gateway.settings`)."""

    workers: int = 1
    max_rows: int = 16
    max_evaluations: int = 2_000_000
    background_rows: int = 100
    timeout_seconds: float = 10.0


class OutputAttributions(msgspec.Struct, frozen=True, kw_only=True):
    """One output column, row by row: its value and each feature's share of it."""

    name: str  # the column: `probabilities[1]`, or the output's name if it has one per row
    output: str  # the model output it belongs to
    baseline: float  # the mean over the background: what the attributions start from
    predictions: list[float]  # per row; equals baseline + the sum of the row's attributions
    attributions: list[list[float]]  # per row, one per feature (in `features` order)


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/models/{m}[/versions/{v}]/explain`: attributions of every row."""

    model_name: str
    model_version: str
    id: str | None  # the request's
    method: Method  # exact: every coalition; kernel: sampled coalitions (an estimate)
    features: list[str]
    background_rows: int  # drawn from the reference profile
    evaluations: int  # model rows run
    outputs: list[OutputAttributions]


class Explainer:
    """Explains predictions of the versions the data plane serves, in a pool of its own."""

    def __init__(self, dataplane: DataPlane, registry: ModelRegistry, limits: ExplainLimits):
        self._dataplane = dataplane
        self._limits = limits
        self._sessions = _Sessions(registry)
        self._executor = ThreadPoolExecutor(limits.workers, thread_name_prefix="driftgate-explain")
        self._free = threading.Semaphore(limits.workers)

    async def explain(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: int | None,
        key: str | None,
    ) -> Explanation:
        """Explain an infer call's rows on the version that would answer it (routed by
        `key`, else the request's id, when `version` is None).

        Raises:
            BadRequestError: Not a tabular model, or rows that do not fit its signature.
            PayloadTooLargeError: More rows than the limits allow.
            ServiceUnavailableError: Every worker is busy, or the deadline passed.
        """
        request, binary = decode_request(body, header_length)
        loaded, _ = await self._dataplane.resolve(name, version, key or request.id)
        manifest = loaded.manifest
        spec, profiles = _tabular(manifest)
        rows = input_arrays(request, binary, manifest.signature)[spec.name]
        chosen = self._plan(manifest, rows.shape[0])
        if not self._free.acquire(blocking=False):
            raise ServiceUnavailableError(
                f"every explanation worker is busy ({self._limits.workers}, explain_workers); "
                "try again shortly"
            )
        try:
            job = self._executor.submit(self._run, manifest, spec, profiles, rows, chosen)
        except BaseException:
            self._free.release()
            raise
        # The slot is the thread's until it finishes, even if this caller stops waiting.
        job.add_done_callback(lambda _: self._free.release())
        outputs, evaluations, method = await asyncio.wrap_future(job)
        return Explanation(
            model_name=manifest.name,
            model_version=str(manifest.version),
            id=request.id,
            method=method,
            features=list(manifest.features.names),
            background_rows=self._limits.background_rows,
            evaluations=evaluations,
            outputs=outputs,
        )

    def close(self) -> None:
        """Stop taking work; explanations under way end by their deadline."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _plan(self, manifest: Manifest, rows: int) -> Plan:
        limits = self._limits
        if rows == 0:
            raise BadRequestError("the input has no rows: send at least one row to explain")
        if rows > limits.max_rows:
            raise PayloadTooLargeError(
                f"{rows} rows: an explain call takes at most {limits.max_rows} "
                "(explain_max_rows); send fewer rows per call"
            )
        features = len(manifest.features.names)

        def planned(count: int) -> Plan | None:
            return plan(
                max_evaluations=limits.max_evaluations,
                rows=count,
                background=limits.background_rows,
                features=features,
            )

        chosen = planned(rows)
        if chosen is None:
            fits = max((n for n in range(1, rows) if planned(n) is not None), default=0)
            advice = (
                f"send at most {fits} rows per call"
                if fits
                else "raise explain_max_evaluations or lower explain_background_rows"
            )
            raise PayloadTooLargeError(
                f"explaining {rows} rows of {features} features needs more than "
                f"explain_max_evaluations ({limits.max_evaluations}) model rows: {advice}"
            )
        return chosen

    def _run(
        self,
        manifest: Manifest,
        spec: TensorSpec,
        profiles: Sequence[NumericProfile],
        rows: np.ndarray,
        chosen: Plan,
    ) -> tuple[list[OutputAttributions], int, Method]:
        """In a worker thread: predictions and attributions of `rows`."""
        load()  # shap's first import takes seconds: not the explanation's time
        session = self._sessions.get(manifest)
        seed = _seed(manifest)
        sample = background(profiles, self._limits.background_rows, seed)
        outputs = [
            output.name
            for output in manifest.signature.outputs
            if output.datatype in ("FP16", "FP32", "FP64") and len(output.shape) in (1, 2)
        ]
        meter = _Meter(self._limits)
        dtype = OIP_TO_NUMPY[spec.datatype]

        def run(x: Floats) -> list[np.ndarray]:
            meter.spend(x.shape[0])
            if dtype.kind in "iu":  # the background's quantiles fall between integers
                x = np.rint(np.nan_to_num(x))
            try:
                results: list[np.ndarray] = session.run(outputs, {spec.name: x.astype(dtype)})
            except Exception as exc:  # ORT raises its own exception types
                raise ModelRuntimeError(f"the model failed: {exc}") from exc
            return [np.asarray(r, dtype=np.float64).reshape(x.shape[0], -1) for r in results]

        def model(x: Floats) -> Floats:
            return np.concatenate(run(x), axis=1)

        explained = rows.astype(np.float64)
        first = run(explained)
        predictions = np.concatenate(first, axis=1)
        attributions = shapley(model, explained, sample, chosen, seed=seed)
        # Columns named as the reference profile names them: `name[i]` where an output
        # gives several values per row, its own name where it gives one.
        columns = [
            (output if found.shape[1] == 1 else f"{output}[{i}]", output)
            for output, found in zip(outputs, first, strict=True)
            for i in range(found.shape[1])
        ]
        result = [
            OutputAttributions(
                name=column,
                output=output,
                baseline=float(attributions.baseline[index]),
                predictions=predictions[:, index].tolist(),
                attributions=attributions.values[:, :, index].tolist(),
            )
            for index, (column, output) in enumerate(columns)
        ]
        return result, meter.rows, attributions.method


def background_of(manifest: Manifest, rows: int) -> Floats:
    """The background sample that explanations of this version use (with
    `explain_background_rows` = `rows`): the same rows on every call.

    Raises:
        BadRequestError: The version is not a tabular model.
    """
    _, profiles = _tabular(manifest)
    return background(profiles, rows, _seed(manifest))


def _seed(manifest: Manifest) -> int:
    return int(manifest.sha256[:8], 16)  # a version's own, fixed: its background never varies


def _tabular(manifest: Manifest) -> tuple[TensorSpec, list[NumericProfile]]:
    """The one 2-D numeric input of a tabular model and its features' profiles."""
    signature = manifest.signature
    takes = ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in signature.inputs)
    refusal = (
        f"{manifest.name} version {manifest.version} takes {takes}: explanations are for "
        "tabular models, with one 2-D numeric input [batch, features]"
    )
    if len(signature.inputs) != 1 or manifest.features.layout != "matrix":
        raise BadRequestError(refusal)
    (spec,) = signature.inputs
    if len(spec.shape) != 2 or spec.datatype not in NUMERIC_DATATYPES:
        raise BadRequestError(refusal)
    if not any(s.datatype in ("FP16", "FP32", "FP64") for s in signature.outputs):
        raise BadRequestError(
            f"{manifest.name} version {manifest.version} has no numeric output to explain "
            "(class labels alone cannot be attributed: export its probabilities too)"
        )
    profiles = []
    for profile in manifest.profile.features:
        if not isinstance(profile, NumericProfile):
            raise BadRequestError(
                f"feature {profile.name!r} of {manifest.name} version {manifest.version} is "
                "categorical in its reference profile: explanations need numeric features"
            )
        profiles.append(profile)
    return spec, profiles


class _Meter:
    """Counts an explanation's model rows; stops it past its budget or its deadline."""

    def __init__(self, limits: ExplainLimits) -> None:
        self.rows = 0
        self._limits = limits
        self._deadline = time.monotonic() + limits.timeout_seconds

    def spend(self, rows: int) -> None:
        self.rows += rows
        if self.rows > self._limits.max_evaluations:
            raise ServiceUnavailableError(
                f"the explanation ran past explain_max_evaluations "
                f"({self._limits.max_evaluations}) model rows; explain fewer rows per call"
            )
        if time.monotonic() > self._deadline:
            raise ServiceUnavailableError(
                f"the explanation took longer than explain_timeout_seconds "
                f"({self._limits.timeout_seconds:g} s); explain fewer rows per call"
            )


class _Sessions:
    """Single-threaded ONNX Runtime sessions of recently explained versions, apart from
    the serving ones: an explanation's large batches never hold inference's threads."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, int], tuple[str, ort.InferenceSession]] = OrderedDict()

    def get(self, manifest: Manifest) -> ort.InferenceSession:
        """The session of a version, loaded (and its artifact verified) if not kept."""
        key = (manifest.name, manifest.version)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == manifest.sha256:
                self._kept.move_to_end(key)
                return kept[1]
        verified, model = self._registry.load_artifact(*key)
        session = open_session(model, intra_op_threads=1)
        with self._lock:
            self._kept[key] = (verified.sha256, session)
            self._kept.move_to_end(key)
            while len(self._kept) > SESSIONS:
                self._kept.popitem(last=False)
        return session


def explain_limits(settings: Settings) -> ExplainLimits:
    """The `explain_*` settings."""
    return ExplainLimits(
        workers=settings.explain_workers,
        max_rows=settings.explain_max_rows,
        max_evaluations=settings.explain_max_evaluations,
        background_rows=settings.explain_background_rows,
        timeout_seconds=settings.explain_timeout_seconds,
    )
