"""KServe, a peer of the `http` scenario, in a virtual environment of its own.

KServe pins its own FastAPI, uvicorn, protobuf and Kubernetes client, so the benchmark
installs it once under a cache directory (`benchmarks.venvs`) and runs the custom model
`benchmarks/peers/kserve_onnx.py` with that environment's Python.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import venvs

VERSION = "0.21.0"
"""The KServe release measured."""
PACKAGES = (f"kserve=={VERSION}", "onnxruntime", "numpy")
PEER = Path(__file__).parent / "peers" / "kserve_onnx.py"
ENVIRON = {"KSERVE_LOGLEVEL": "WARNING"}
"""No log line per request, as for every server the benchmark runs."""


def kserve_python(cache: Path) -> Path:
    """The Python of KServe's environment under `cache`, installed on first use."""
    return venvs.environment(
        cache,
        f"kserve-{VERSION}",
        PACKAGES,
        leave_out="leave the peer out with `--servers` (without kserve)",
    )


def kserve_command(python: Path, model: Path, name: str, port: int) -> list[str]:
    """Serve `model` as `name` over REST on `port`: one worker, no gRPC server, and no
    latency log line per request."""
    return [
        *(str(python), str(PEER), f"--model_name={name}", f"--model_path={model}"),
        *(f"--http_port={port}", "--workers=1", "--enable_grpc=false"),
        "--enable_latency_logging=false",
    ]
