"""What the console's pages show, built from driftgate's components, knowing no HTTP.

Each builder reads the deployment manager, the drift monitor and the rollout controller and
returns frozen Structs that a template renders as they are: numbers already formatted,
statuses and reasons in words, charts as finished inline SVG (`gateway.ui.charts`). Each
page's Structs live with its builder (`models_page`, `version_page`, `rollout_page` and its
`comparison`, `compare_page`, `pending_page`); this module is where the web layer finds them
all.
"""

from __future__ import annotations

from gateway.ui.charts import Chart
from gateway.ui.compare_page import CompareView, compare_view
from gateway.ui.comparison import ComparisonView, OutputComparison, TrafficView
from gateway.ui.models_page import (
    DriftWord,
    ModelSummary,
    ModelsView,
    Role,
    RolloutSummary,
    VersionSummary,
    models_view,
)
from gateway.ui.pending_page import PendingPanel, PendingView, pending_panel
from gateway.ui.rollout_page import EvaluationView, GateView, RolloutView, rollout_view
from gateway.ui.version_page import (
    FeatureView,
    Figure,
    QualityView,
    VersionView,
    version_view,
)

__all__ = [
    "Chart",
    "CompareView",
    "ComparisonView",
    "DriftWord",
    "EvaluationView",
    "FeatureView",
    "Figure",
    "GateView",
    "ModelSummary",
    "ModelsView",
    "OutputComparison",
    "PendingPanel",
    "PendingView",
    "QualityView",
    "Role",
    "RolloutSummary",
    "RolloutView",
    "TrafficView",
    "VersionSummary",
    "VersionView",
    "compare_view",
    "models_view",
    "pending_panel",
    "rollout_view",
    "version_view",
]
