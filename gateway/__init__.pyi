"""The names `gateway` exports: read by mypy, and by lazy_loader to load each on first use."""

from .app import app_from_environment, create_app
from .dataplane import DataPlane, InferenceResult
from .errors import GatewayError
from .runtime import OnnxRuntime, Runtime
from .settings import Settings, load_settings

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
