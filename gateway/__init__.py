"""HTTP data plane: Open Inference Protocol routes, runtimes, the app factory and the CLI."""

from gateway.app import app_from_environment, create_app
from gateway.dataplane import DataPlane, InferenceResult
from gateway.errors import GatewayError
from gateway.runtime import OnnxRuntime, Runtime
from gateway.settings import Settings, load_settings

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
