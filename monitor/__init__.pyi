"""The names `monitor` exports: read by mypy, and by lazy_loader to load each on first use."""

from .agreement import AgreementSnapshot, ShadowAgreement
from .calibration import (
    chi_square_pvalue,
    chi_square_threshold,
    ks_pvalue,
    ks_threshold,
    psi_pvalue,
    psi_threshold,
)
from .detector import DriftAssessment, DriftDetector, FeatureAssessment, Status
from .drift_config import DriftConfig
from .kernels import warm_up
from .layout import (
    CategoricalStatistics,
    FeatureStatistics,
    NumericStatistics,
    WindowCounts,
    WindowLayout,
)
from .metrics import GatewayMetrics
from .window import DriftWindow, merge

__all__ = [
    "AgreementSnapshot",
    "CategoricalStatistics",
    "DriftAssessment",
    "DriftConfig",
    "DriftDetector",
    "DriftWindow",
    "FeatureAssessment",
    "FeatureStatistics",
    "GatewayMetrics",
    "NumericStatistics",
    "ShadowAgreement",
    "Status",
    "WindowCounts",
    "WindowLayout",
    "chi_square_pvalue",
    "chi_square_threshold",
    "ks_pvalue",
    "ks_threshold",
    "merge",
    "psi_pvalue",
    "psi_threshold",
    "warm_up",
]
