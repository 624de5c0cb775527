"""MLServer, a peer of the `grpc` and `http` scenarios, in a virtual environment of its own.

MLServer pins what driftgate cannot share (protobuf below 7, FastAPI below 0.116, its own
OpenTelemetry exporters), so the benchmark installs it once under a cache directory
(`benchmarks.venvs`) and runs it from there: `mlserver start` over a model repository
holding the ONNX file and the custom runtime `benchmarks/peers/mlserver_onnx.py`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks import venvs

VERSION = "1.7.1"
"""The MLServer release measured."""
PACKAGES = (f"mlserver=={VERSION}", "onnxruntime", "numpy")
RUNTIME = Path(__file__).parent / "peers" / "mlserver_onnx.py"


def mlserver_command(cache: Path) -> Path:
    """The `mlserver` command of the environment under `cache`, installed on first use."""
    python = venvs.environment(
        cache,
        f"mlserver-{VERSION}",
        PACKAGES,
        leave_out="leave the peer out with `--servers` (without mlserver)",
    )
    return python.parent / "mlserver"


def model_repository(root: Path, model: Path, name: str, *, grpc_port: int, http_port: int) -> Path:
    """A folder `mlserver start` serves: its settings (gRPC on `grpc_port`, REST on
    `http_port`, inference in the server's own process, no metrics server) and one model,
    `name`, with the runtime."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / "model.onnx")
    shutil.copy(RUNTIME, folder / RUNTIME.name)
    settings = {
        "host": "127.0.0.1",
        "grpc_port": grpc_port,
        "http_port": http_port,
        # Inference in the serving process: a pool of worker processes would put a second
        # process on the one CPU and measure the hand-off between them.
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": name,
        "implementation": f"{RUNTIME.stem}.OnnxModel",
        "parameters": {"uri": str(folder / "model.onnx"), "version": "1"},
    }
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    return root
