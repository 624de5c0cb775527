"""The servers the gateway is compared with over HTTP: the limit and the peers users would
pick instead, each serving the same ONNX file with one ONNX Runtime intra-op thread.

- `raw-hello`: a bare ASGI app on uvicorn that reads the body and answers a fixed body;
- `fastapi` and `fastapi-async`: FastAPI + pydantic as its docs show, with a sync `def`
  endpoint (run in its thread pool) and with an `async def` one, on the same uvicorn;
- `mlserver`: MLServer's REST server with a custom runtime as its docs show;
- `kserve`: KServe's `ModelServer` with a custom `kserve.Model` as its docs show.

MLServer and KServe each run from a virtual environment of their own, installed on first
use under the cache directory (`benchmarks.venvs`), since their pins conflict with
driftgate's and with each other's.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from benchmarks import kserve, mlserver
from benchmarks.servers import Server, free_port, uvicorn_command

LIMIT = "raw-hello"
FASTAPI, FASTAPI_ASYNC, MLSERVER, KSERVE = "fastapi", "fastapi-async", "mlserver", "kserve"
PEERS = (FASTAPI, FASTAPI_ASYNC, MLSERVER, KSERVE)
"""The peers' names, in the order they run."""


def limit() -> Server:
    """The bare ASGI app: what any Python HTTP server costs per request, at least."""
    return Server(
        name=LIMIT,
        role="limit",
        description="bare ASGI app reading the body, uvicorn + uvloop + httptools",
        command=lambda port: uvicorn_command("benchmarks.peers.raw_asgi:app", port),
    )


def peers(
    names: Collection[str], *, root: Path, model: Path, model_name: str, cache: Path
) -> list[Server]:
    """The peers called `names` serving `model` as `model_name`; MLServer's and KServe's
    environments are installed under `cache` first if missing (minutes, once)."""
    fastapi_environ = {"BENCH_ONNX_MODEL": str(model), "BENCH_MODEL_NAME": model_name}
    servers = []
    if FASTAPI in names:
        servers.append(
            Server(
                name=FASTAPI,
                role="peer",
                description="FastAPI + pydantic + onnxruntime, sync def endpoint, same uvicorn",
                command=lambda port: uvicorn_command("benchmarks.peers.fastapi_onnx:app", port),
                environ=fastapi_environ,
            )
        )
    if FASTAPI_ASYNC in names:
        servers.append(
            Server(
                name=FASTAPI_ASYNC,
                role="peer",
                description="the same with an async def endpoint",
                command=lambda port: uvicorn_command(
                    "benchmarks.peers.fastapi_onnx:async_app", port
                ),
                environ=fastapi_environ,
            )
        )
    if MLSERVER in names:
        command = mlserver.mlserver_command(cache)

        def start_mlserver(port: int) -> list[str]:
            repository = mlserver.model_repository(
                root / "mlserver", model, model_name, grpc_port=free_port(), http_port=port
            )
            return [str(command), "start", str(repository)]

        servers.append(
            Server(
                name=MLSERVER,
                role="peer",
                description=f"MLServer {mlserver.VERSION} REST, custom ONNX Runtime runtime",
                command=start_mlserver,
            )
        )
    if KSERVE in names:
        python = kserve.kserve_python(cache)
        servers.append(
            Server(
                name=KSERVE,
                role="peer",
                description=f"KServe {kserve.VERSION} ModelServer, custom kserve.Model with ORT",
                command=lambda port: kserve.kserve_command(python, model, model_name, port),
                environ=kserve.ENVIRON,
            )
        )
    return servers
