"""Gateway settings: typed, frozen, and read from the environment in exactly one place."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gateway.tokens import parse_tokens
from monitor.business import MAX_VALUE_NAMES
from monitor.drift_config import DriftConfig
from registry.names import ValueName

ENV_PREFIX = "DRIFTGATE_"
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0.0)]
MIN_HASH_KEY = 16  # characters: a short key falls to the same dictionary attack as none


class Batching(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Dynamic batching of one model's versions (see gateway/batching.py)."""

    max_batch_size: Positive = 1
    """Rows per ONNX Runtime call; 1 (the default) turns batching off. Only models whose rows
    are independent (every input and output has a variable leading batch dimension) batch;
    the others run each request alone whatever this says. Off by default: on the benchmark's
    real path it saved nothing measurable (docs/benchmarks.md)."""
    max_queue_delay_ms: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """Extra wait to fill a batch; 0 never waits (a lone request runs at once)."""
    max_queued: Positive = 1024
    """Requests waiting for a batch before new ones are refused with 503."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the gateway can be configured with."""

    home: Path = Path(".driftgate")
    """Data directory: the registry (`models/`, unless `registry_url` names another), the
    embedded control state, and a remote registry's cached artifacts (`cache/`)."""
    registry_url: str = ""
    """Where model versions are stored: a local path, or an object store shared by every
    replica, `s3://bucket/prefix` (AWS, MinIO, Ceph, R2), `gs://bucket/prefix` or
    `az://container/prefix`, with credentials from the cloud's standard variables
    (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, web identity, ...). Empty: `home/models`."""
    registry_endpoint: str = ""
    """The object store's endpoint when it is not the cloud's own: a MinIO or Ceph server,
    e.g. `http://minio:9000` (plain http is allowed for an http:// endpoint). Empty: the
    cloud's, or `AWS_ENDPOINT_URL`."""
    host: str = "127.0.0.1"
    """Address `driftgate serve` binds."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    """Port `driftgate serve` binds."""
    grpc_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8001
    """Port of the Open Inference Protocol over gRPC (`inference.GRPCInferenceService` and
    `grpc.health.v1.Health`), on `host`, served by every worker beside REST; 8001, as
    Triton's. 0 turns gRPC off."""
    grpc_reflection: bool = False
    """gRPC server reflection (what `grpcurl` lists and describes); off, the services are
    described only by the vendored `gateway/grpc/open_inference_grpc.proto`."""
    tls_cert_file: str = ""
    """PEM certificate chain of the server. With `tls_key_file`, REST is served over HTTPS
    and gRPC over TLS, on the same ports; empty (both): plain text."""
    tls_key_file: str = ""
    """PEM private key of `tls_cert_file`."""
    workers: Positive = 1
    """Server worker processes."""
    max_request_bytes: Positive = 16 * 1024 * 1024
    """Largest accepted request body, before and after decompression (413 beyond)."""
    max_upload_bytes: Positive = 512 * 1024 * 1024
    """Largest model-plus-reference upload accepted by the admin API."""
    max_header_bytes: Positive = 64 * 1024
    """Largest request line plus headers; beyond it the request is answered 431 and its
    connection closed. It also bounds what an unfinished header holds in memory."""
    max_headers: Positive = 100
    """Most header fields in one request (431 beyond)."""
    max_connections: Positive = 1000
    """Open connections (or running requests) per worker process past which new requests are
    answered 503 at once (uvicorn's `limit_concurrency`). Keep it under the open-file limit
    (`ulimit -n`); it bounds one worker's memory, not a flood from many addresses."""
    keep_alive_seconds: Positive = 5
    """An idle kept-alive connection is closed after this long. Behind a load balancer, make
    it longer than the balancer's own idle timeout."""
    header_timeout_seconds: Seconds = 10.0
    """Time a client has to send a request's line and headers, from the connection's opening
    (or the request's first byte on a kept-alive connection); the connection is closed past
    it, so slow or silent connections cannot hold the server's slots."""
    body_timeout_seconds: Seconds = 30.0
    """Time a client has to send a request body, plus a second per `min_body_rate` bytes
    received; the connection is closed past it."""
    min_body_rate: Positive = 16 * 1024
    """Bytes per second of body that extend `body_timeout_seconds`: an upload at a fair
    speed finishes whatever its size, a trickle is cut off."""
    inference_threads: Positive = 2
    """Threads that run ONNX Runtime sessions, off the event loop."""
    intra_op_threads: Positive = 1
    """ONNX Runtime threads inside one session run."""
    inline_inference_us: Annotated[float, msgspec.Meta(ge=0.0)] = 250.0
    """Runs predicted shorter than this (in microseconds, from a fit at warm-up) run on the
    event loop instead of a worker thread: the hand-off and the GIL traffic it brings cost
    more than the loop gains meanwhile (a batch of 32 rows of a small model measured 1.2 x
    cheaper per call in place than in a thread). 0 sends every run to a thread."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log verbosity of the server."""
    log_format: Literal["text", "json"] = "text"
    """`text`: one readable line per record. `json`: one JSON object per line with `time`,
    `level`, `logger` and `message`, plus what the record knows of its call (request id,
    trace id, model, version, role, status, latency); see `gateway.logs`."""
    access_log: bool = False
    """Log one line per infer call (method, path, status, latency, model, version, role,
    request id, trace id) to the `driftgate.access` logger, written off the event loop."""
    tracing: bool = False
    """OpenTelemetry tracing of every call, configured by the standard `OTEL_*` variables
    (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`, ...; see
    `gateway.tracing`). Off, the request path carries no tracing code at all."""
    tokens: str = ""
    """Bearer tokens, `NAME:ROLE:SECRET` comma-separated. ROLE `read` reads the admin API,
    `feedback` sends labels (`POST /v1/feedback`), `explain` asks for explanations
    (`POST /v1/models/{m}/explain`), `admin` does all of these and every admin write.
    With none, those routes answer 401."""
    console: bool = True
    """Serve the operator console at `/ui` (login with a `read` or `admin` token)."""
    console_session_seconds: Annotated[float, msgspec.Meta(ge=60.0)] = 8 * 3600.0
    """How long a console login lasts; logging out, or changing the token's secret, ends
    it sooner."""
    approval_ttl_seconds: Annotated[float, msgspec.Meta(gt=0.0)] = 24 * 3600.0
    """How long a protected model's pending change waits for a second admin's approval
    before it expires (recorded in the audit log)."""
    redis_url: str = ""
    """Redis for shared control state (many workers or replicas); empty: embedded files."""
    shadow_queue_size: Positive = 1000
    """Copies waiting for shadow versions; beyond it copies are dropped and counted."""
    shadow_workers: Positive = 1
    """Concurrent shadow runs; shadows never take more than this from the primary."""
    explain_workers: Positive = 1
    """Explanations computed at once (`POST /v1/models/{m}/explain`), each in a thread of
    their own pool with its own single-threaded session, never inference's; one more call
    is answered 503 at once rather than queued."""
    explain_max_rows: Positive = 16
    """Rows one explain call may send (413 beyond)."""
    explain_max_evaluations: Positive = 2_000_000
    """Model rows one explain call may run, in all (413 when even the cheapest explanation
    of its rows needs more). Each coalition of features runs the model on every background
    row: all 2^F coalitions of F features are enumerated (exact Shapley values) when they
    fit, feature orders are sampled (permutation Shapley values) when they do not."""
    explain_background_rows: Positive = 100
    """Rows of the background sample drawn from the reference profile: attributions are
    relative to the model's mean output over it."""
    explain_timeout_seconds: Seconds = 10.0
    """Longest an explanation may run the model; it is stopped with 503 past it."""
    batching: Batching = Batching()
    """Batching of every model, unless `model_batching` names it."""
    model_batching: dict[str, Batching] = {}
    """Per-model batching, e.g. `DRIFTGATE_MODEL_BATCHING='{"demo": {"max_batch_size": 32}}'`."""
    sample_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.1
    """Fraction of requests whose features and outputs the drift monitor sees."""
    model_sample_rates: dict[str, Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]] = {}
    """Per-model sampling, e.g. `DRIFTGATE_MODEL_SAMPLE_RATES='{"demo": 1.0}'`."""
    drift_interval_seconds: Annotated[float, msgspec.Meta(gt=0.0)] = 10.0
    """Between drift evaluations (an alarm persists over evaluations and fresh rows)."""
    drift_pane_seconds: Annotated[float, msgspec.Meta(gt=0.0)] = 10.0
    """Width of a time pane, the grain at which workers' counts merge."""
    drift_window_panes: Positive = 30
    """Panes one drift evaluation covers (30 x 10 s: five minutes)."""
    drift: DriftConfig = DriftConfig()
    """How drift is decided: alpha, effect lines, persistence (`monitor.detector`)."""
    model_drift: dict[str, DriftConfig] = {}
    """Per-model drift decisions, replacing `drift` for that model, e.g.
    `DRIFTGATE_MODEL_DRIFT='{"pricing": {"alpha": 0.001}}'`."""
    retraining_webhook: str = ""
    """URL POSTed a retraining event when a stable version's inputs drift."""
    webhook_secret: str = ""
    """Key that signs every webhook delivery (rollout gates and decisions, retraining), as
    Standard Webhooks specifies (`monitor/webhooks.py`): a random secret of at least 16
    characters, or `whsec_<base64>`. Empty: deliveries are unsigned."""
    retraining_stream: bool = False
    """Also add retraining events to the Redis stream `driftgate:retraining`."""
    retraining_command: str = ""
    """A command run with each retraining event as JSON on its standard input."""
    retraining_cooldown_seconds: Annotated[float, msgspec.Meta(ge=0.0)] = 3600.0
    """Least time between two retraining events of one version (one per drift episode): an
    episode ends this long (at least a minute) after the last evaluation that was not `ok`."""
    export_sensitive: Literal["drop", "hash"] = "drop"
    """Sensitive features in exports: left out, or replaced by an HMAC-SHA256."""
    export_hash_key: str = ""
    """The HMAC key of hashed sensitive features: a random secret of at least 16 characters,
    required with `export_sensitive = "hash"` (without one, hashes are inverted by trying
    every likely value)."""
    drift_window_rows: Positive = 2000
    """Rows kept per version for exports (the sliding window of recent samples)."""
    feedback_max_age_seconds: Seconds = 3600.0
    """How long a sampled prediction waits for its label; a later label is `expired`. With
    Redis it is also the lifetime of the shared prediction log's keys after the last write."""
    feedback_capacity: Positive = 100_000
    """Most sampled predictions waiting for labels, the oldest forgotten first (`expired`):
    per process without Redis, for the whole cluster in Redis (plus as many of its own
    that each process keeps to join while Redis is unreachable). Joined labels, kept for
    retraining exports, are bounded alike."""
    business_values: Annotated[tuple[ValueName, ...], msgspec.Meta(max_length=MAX_VALUE_NAMES)] = ()
    """Business value names feedback items may carry (`values`), e.g.
    `DRIFTGATE_BUSINESS_VALUES='["revenue"]'`; others get a 400. Empty (the default): any
    name, up to 64 distinct ones per process (`monitor.business.MAX_VALUE_NAMES`)."""
    inference_log_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    """Fraction of infer calls the inference log records (`monitor.inference_log`), to the
    sinks below, with the labels feedback receives; 0 (the default) turns it off. Decided
    by a hash of the routing key with the drift monitor's own draw, so at a rate at least
    `sample_rate` every call the monitor samples is logged too."""
    model_inference_log_rates: dict[str, Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]] = {}
    """Per-model log rates, e.g. `DRIFTGATE_MODEL_INFERENCE_LOG_RATES='{"churn": 1.0}'`."""
    inference_log_parquet: bool = False
    """Log to rolling Parquet files under `home/inference-log/MODEL/DAY/` (read back with
    `driftgate log export`)."""
    inference_log_roll_seconds: Seconds = 60.0
    """A Parquet file is written once its first record is this old (a killed process loses
    at most this much of the log)."""
    inference_log_roll_bytes: Positive = 64 * 1024 * 1024
    """Records held in memory (estimated) past which every held set is written as a file."""
    inference_log_stream: str = ""
    """Log to this Redis Stream on `redis_url` (`XADD`, one entry per record), e.g.
    `driftgate:inference-log`; empty: no stream."""
    inference_log_stream_maxlen: Positive = 100_000
    """Entries the stream keeps, about (`MAXLEN ~`): the oldest are trimmed."""
    inference_log_url: str = ""
    """Log to this HTTP endpoint: batched POSTs of CloudEvents in batch mode (JSON), retried
    with exponential backoff on connection errors, 408, 425, 429 and 5xx (5 times), then
    dropped and counted; any other error status drops the batch at once."""
    inference_log_queue_size: Positive = 10_000
    """Records waiting for each sink; past it new records are dropped and counted
    (`driftgate_inference_log_dropped_total`), never waited for."""
    inference_log_flush_seconds: Seconds = 1.0
    """The longest a record waits for its batch (of up to 256 records) to be written."""

    def __post_init__(self) -> None:
        """Refuse settings that would run but leak: malformed tokens (named by position,
        never by their text), or hashed exports without a real key."""
        parse_tokens(self.tokens)
        if self.webhook_secret and len(self.webhook_secret) < MIN_HASH_KEY:
            raise ValueError(
                f"webhook_secret must be at least {MIN_HASH_KEY} random characters (e.g. from "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`): a short one is "
                "guessed, and any receiver would accept forged deliveries"
            )
        if self.export_sensitive == "hash" and len(self.export_hash_key) < MIN_HASH_KEY:
            raise ValueError(
                f'export_sensitive = "hash" needs an export_hash_key of at least {MIN_HASH_KEY} '
                "random characters (e.g. from `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`); without one, hashed values are recovered "
                'by hashing every likely value. Or use export_sensitive = "drop"'
            )
        if self.inference_log_stream and not self.redis_url:
            raise ValueError("inference_log_stream needs redis_url (the stream's Redis)")
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(
                f"port and grpc_port are both {self.port}: give gRPC a port of its own, or 0"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                "TLS needs both tls_cert_file and tls_key_file (PEM files), or neither"
            )
        if self.inference_log_on and not (
            self.inference_log_parquet or self.inference_log_stream or self.inference_log_url
        ):
            raise ValueError(
                "the inference log is on (inference_log_rate) but has nowhere to go: set "
                "inference_log_parquet, inference_log_stream or inference_log_url"
            )

    @property
    def tls_on(self) -> bool:
        """Whether REST and gRPC are served over TLS."""
        return bool(self.tls_cert_file)

    @property
    def inference_log_on(self) -> bool:
        """Whether any model's calls are logged."""
        return self.inference_log_rate > 0 or any(self.model_inference_log_rates.values())

    @property
    def inference_log_path(self) -> Path:
        """Where the inference log's Parquet files are written."""
        return self.home / "inference-log"

    @property
    def registry_location(self) -> str:
        """Where model versions are stored: `registry_url`, or the data directory's."""
        return self.registry_url or str(self.home / "models")

    @property
    def artifact_cache_path(self) -> Path:
        """Where a remote registry's artifacts are kept once verified."""
        return self.home / "cache" / "artifacts"

    def sample_rate_of(self, model: str) -> float:
        """The fraction of `model`'s requests the drift monitor sees."""
        return self.model_sample_rates.get(model, self.sample_rate)

    def batching_of(self, model: str) -> Batching:
        """The batching settings of `model`."""
        return self.model_batching.get(model, self.batching)

    @property
    def upload_path(self) -> Path:
        """Where admin uploads are staged while they register (removed after each)."""
        return self.home / "uploads"

    @property
    def state_path(self) -> Path:
        """Where the embedded control state (deployments, audit log) is stored."""
        return self.home / "state"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from, in rising precedence: defaults, the TOML file named by
    `DRIFTGATE_CONFIG`, `DRIFTGATE_*` variables, and `overrides` (not None ones).

    Raises:
        ValueError: an unknown key or a value of the wrong type, naming it.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config := environ.get(f"{ENV_PREFIX}CONFIG"):
        with open(config, "rb") as handle:
            values.update(tomllib.load(handle))
    fields = {field.name for field in msgspec.structs.fields(Settings)}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and (name := key[len(ENV_PREFIX) :].lower()) in fields:
            values[name] = msgspec.json.decode(value) if name in _JSON_FIELDS else value
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(values, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid driftgate settings: {exc}") from exc


class ClientSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the operator commands (`driftgate traffic`, `audit`) find a running gateway."""

    url: str = "http://127.0.0.1:8000"
    """Base URL of the gateway."""
    token: str = ""
    """Bearer token for the admin API (its secret part)."""


def load_client_settings(
    environ: Mapping[str, str] | None = None, **overrides: str | None
) -> ClientSettings:
    """Client settings from `DRIFTGATE_URL` / `DRIFTGATE_TOKEN`, then `overrides`."""
    environ = os.environ if environ is None else environ
    values = {
        name: environ[f"{ENV_PREFIX}{name.upper()}"]
        for name in ("url", "token")
        if f"{ENV_PREFIX}{name.upper()}" in environ
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    return msgspec.convert(values, ClientSettings)


_JSON_FIELDS = frozenset(
    {
        "batching",
        "model_batching",
        "model_sample_rates",
        "drift",
        "model_drift",
        "model_inference_log_rates",
        "business_values",
    }
)  # structured: JSON in the environment


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise NotImplementedError(f"cannot read {kind}")


# Settings that hold credentials (a Redis or webhook URL may embed a password or token).
SECRET_FIELDS = frozenset(
    {
        "tokens",
        "export_hash_key",
        "redis_url",
        "retraining_webhook",
        "webhook_secret",
        "inference_log_url",
    }
)
_SECRET_VARIABLES = frozenset(f"{ENV_PREFIX}{name.upper()}" for name in SECRET_FIELDS)


def settings_environ(settings: Settings, *, secrets: bool = False) -> dict[str, str]:
    """`DRIFTGATE_*` variables that reproduce `settings` (to hand to worker processes).

    Secrets (`SECRET_FIELDS`) are left out unless `secrets` is true: they never come from
    the command line, so a worker reads them where its parent did (the `DRIFTGATE_CONFIG`
    file, or the variables already set), and a secret from the file is never copied into
    an environment that every child process inherits.
    """
    data = msgspec.to_builtins(settings, enc_hook=str)
    return {
        f"{ENV_PREFIX}{key.upper()}": msgspec.json.encode(value).decode()
        if key in _JSON_FIELDS
        else str(value)
        for key, value in data.items()
        if secrets or key not in SECRET_FIELDS
    }


def child_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for commands the gateway runs (`retraining_command`): this process's,
    without the variables that carry the gateway's secrets."""
    environ = os.environ if environ is None else environ
    return {key: value for key, value in environ.items() if key not in _SECRET_VARIABLES}
