"""HTTP data plane: Open Inference Protocol routes, runtimes, the app factory and the CLI.

The names below are imported on first use (PEP 562), not with the package: the operator
commands (`driftgate traffic ...`) import `gateway.cli`, and should start in a fraction of
the second that loading the server (Litestar, ONNX Runtime, numba) takes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import app_from_environment, create_app
    from gateway.dataplane import DataPlane, InferenceResult
    from gateway.errors import GatewayError
    from gateway.runtime import OnnxRuntime, Runtime
    from gateway.settings import Settings, load_settings

_HOMES = {
    "DataPlane": "gateway.dataplane",
    "GatewayError": "gateway.errors",
    "InferenceResult": "gateway.dataplane",
    "OnnxRuntime": "gateway.runtime",
    "Runtime": "gateway.runtime",
    "Settings": "gateway.settings",
    "app_from_environment": "gateway.app",
    "create_app": "gateway.app",
    "load_settings": "gateway.settings",
}

__all__ = [
    "DataPlane",
    "GatewayError",
    "InferenceResult",
    "OnnxRuntime",
    "Runtime",
    "Settings",
    "app_from_environment",
    "create_app",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
