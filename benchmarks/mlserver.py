"""MLServer, the `grpc` scenario's peer, in a virtual environment of its own.

MLServer pins what driftgate cannot share (protobuf below 7, FastAPI below 0.116, its own
OpenTelemetry exporters), so the benchmark installs it once, with pip from PyPI, under a
cache directory, and runs it from there: `mlserver start` over a model repository holding
the ONNX file and the custom runtime `benchmarks/peers/mlserver_onnx.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.scenario import BenchmarkError

VERSION = "1.7.1"
"""The MLServer release measured."""
PACKAGES = (f"mlserver=={VERSION}", "onnxruntime", "numpy")
RUNTIME = Path(__file__).parent / "peers" / "mlserver_onnx.py"


def default_cache() -> Path:
    """`$XDG_CACHE_HOME/driftgate-bench`, else `~/.cache/driftgate-bench`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftgate-bench"


def mlserver_command(cache: Path) -> Path:
    """The `mlserver` command of the environment under `cache`, installed on first use."""
    environment = cache / f"mlserver-{VERSION}"
    command = environment / "bin" / "mlserver"
    done = environment / ".installed"
    if done.exists() and command.exists():
        return command
    shutil.rmtree(environment, ignore_errors=True)  # a half-made one from an earlier failure
    try:
        subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True)
        subprocess.run(
            [str(environment / "bin" / "python"), "-m", "pip", "install", "--quiet", *PACKAGES],
            check=True,
            timeout=1200,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(
            f"could not install MLServer into {environment} ({exc}); run with "
            "`--servers raw-grpc gateway` to leave the peer out"
        ) from exc
    done.touch()
    return command


def model_repository(root: Path, model: Path, name: str, *, grpc_port: int, http_port: int) -> Path:
    """A folder `mlserver start` serves: its settings (gRPC on `grpc_port`, inference in
    the server's own process, no metrics server) and one model, `name`, with the runtime."""
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
