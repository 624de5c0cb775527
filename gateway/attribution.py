"""Shapley values of a tabular model's outputs, from shap's model-agnostic Kernel SHAP.

The attributions are interventional Shapley values against a background sample: the worth
of a coalition S of features is the model's mean output when the features in S keep the
explained row's values and the others take a background row's. They add up (efficiency) to
the row's prediction minus the baseline, the model's mean output over the background.

Kernel SHAP (Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions",
NeurIPS 2017) fits the attributions by a weighted regression over coalitions, constrained
to add up exactly. Over every one of the 2^M - 2 proper coalitions of M features its
solution is exactly the Shapley values (`exact`); when they do not all fit the budget, the
largest-weighted coalition sizes are taken whole and the rest sampled (`kernel`, an
estimate, still adding up exactly), with numpy's global generator seeded for each
explanation so that the same call gets the same answer.

Kernel SHAP needs no compilation (shap's other explainers compile numba kernels, seconds
to a minute per process on first use) and builds every masked row of one explained row at
once: coalitions x background x features values, bounded by `MASKED_VALUES`. shap itself
is imported on the first explanation, in its worker: importing it (scikit-learn, pandas)
takes seconds that a gateway which never explains should not pay at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.errors import ServiceUnavailableError

Floats = npt.NDArray[np.float64]
Method = Literal["exact", "kernel"]
# Masked rows one explained row holds at once, as float64 values: 128 MiB.
MASKED_VALUES = 1 << 24
# numpy's global generator is shap's source of sampled coalitions: one seeded draw at a time.
_SAMPLING = threading.Lock()


class Attributions(NamedTuple):
    """Attributions of every explained row to every output column."""

    method: Method
    baseline: Floats  # [columns]: the mean output over the background
    values: Floats  # [rows, features, columns]


class Plan(NamedTuple):
    """How many coalitions each row gets, and so by which method."""

    method: Method
    coalitions: int  # per explained row


def plan(*, max_evaluations: int, rows: int, background: int, features: int) -> Plan | None:
    """Every coalition if all of them fit `max_evaluations` model rows (and the memory
    bound), else as many as fit; None if fewer than 2 * features + 2 fit (the coalitions
    of one feature in and of one feature out, which Kernel SHAP takes first).

    Each coalition runs the model on every background row; so do the baseline (once) and
    each explained row itself.
    """
    by_budget = (max_evaluations - background) // (rows * background) - 1
    by_memory = MASKED_VALUES // (background * max(features, 1))
    coalitions = min(by_budget, by_memory)
    every = 2**features - 2 if features <= 30 else None  # past 2^30 no budget fits them
    if every is not None and coalitions >= every:
        return Plan("exact", max(every, 0))
    if coalitions < 2 * features + 2:
        return None
    return Plan("kernel", coalitions)


def load() -> None:
    """Import shap (seconds the first time, nothing after): before a deadline starts.

    Raises:
        ServiceUnavailableError: shap is not installed (it comes with the `explain` extra).
    """
    try:
        import shap  # noqa: F401
    except ImportError as exc:
        raise ServiceUnavailableError(
            "explanations need shap, which this gateway lacks: install driftgate[explain]"
        ) from exc


def shapley(
    model: Callable[[Floats], Floats],
    rows: Floats,
    background: Floats,
    chosen: Plan,
    *,
    seed: int,
) -> Attributions:
    """Attributions of `model` (rows [n, features] -> outputs [n, columns]) at `rows`
    against `background`, by the `chosen` plan; `seed` fixes sampled coalitions."""
    import shap  # see the module docstring

    count, features = rows.shape
    if chosen.method == "exact":
        values, baseline = _explain(shap, model, rows, background, chosen)
    else:
        with _SAMPLING:
            np.random.seed(seed)  # shap draws its coalitions from the global generator
            values, baseline = _explain(shap, model, rows, background, chosen)
    return Attributions(
        method=chosen.method,
        baseline=np.asarray(baseline, dtype=np.float64).reshape(-1),
        values=np.asarray(values, dtype=np.float64).reshape(count, features, -1),
    )


def _explain(
    shap: object,
    model: Callable[[Floats], Floats],
    rows: Floats,
    background: Floats,
    chosen: Plan,
) -> tuple[object, object]:
    explainer = shap.KernelExplainer(model, background)  # type: ignore[attr-defined]
    values = explainer.shap_values(rows, nsamples=chosen.coalitions, l1_reg=False, silent=True)
    return values, explainer.expected_value
