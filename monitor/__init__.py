"""After deploy: sampled features, drift statistics, metrics, rollout gates."""

from monitor.agreement import AgreementSnapshot, ShadowAgreement
from monitor.calibration import (
    chi_square_pvalue,
    chi_square_threshold,
    ks_pvalue,
    ks_threshold,
    psi_pvalue,
    psi_threshold,
)
from monitor.detector import (
    DriftAssessment,
    DriftConfig,
    DriftDetector,
    FeatureAssessment,
    Status,
)
from monitor.kernels import warm_up
from monitor.layout import (
    CategoricalStatistics,
    FeatureStatistics,
    NumericStatistics,
    WindowCounts,
    WindowLayout,
)
from monitor.metrics import GatewayMetrics
from monitor.window import DriftWindow, merge

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
