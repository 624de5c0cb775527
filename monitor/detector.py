"""Drift decisions for one model version: ok, warn, drift or insufficient data.

The p-values of all features of a version are corrected together (Holm or Bonferroni), so
`alpha` bounds the chance that one evaluation of a drift-free version flags any feature.
Significance alone is `warn`; `drift` also needs an effect size worth acting on, in
`persistence` consecutive evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from monitor.calibration import (
    chi_square_pvalue,
    chi_square_threshold,
    ks_pvalue,
    ks_threshold,
)
from monitor.layout import FeatureStatistics, NumericStatistics

Status = Literal["ok", "warn", "drift", "insufficient_data"]
# Worst wins for a version; too little data is worse than ok: it is never evidence of health.
_SEVERITY: dict[Status, int] = {"ok": 0, "insufficient_data": 1, "warn": 2, "drift": 3}


class DriftConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How drift is decided; the defaults suit windows of a few hundred to some thousand rows.

    Bounds are checked when the configuration is decoded (`msgspec.json.decode`).
    """

    # Chance that one evaluation of a drift-free version flags any feature. 1% of one
    # evaluation a minute is a spurious `warn` every ~2 h; `persistence` makes `drift` rarer.
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.01
    # Holm controls the same family-wise rate as Bonferroni and never rejects less.
    correction: Literal["holm", "bonferroni"] = "holm"
    # Fewer non-missing samples are `insufficient_data`: below ~10 per decile bin the tests'
    # chi-square and Kolmogorov approximations, and any histogram, are unreliable.
    min_samples: Annotated[int, msgspec.Meta(ge=1)] = 100
    # The customary "moderate shift" line of PSI, over the coarse (decile) bins.
    psi_effect: Annotated[float, msgspec.Meta(ge=0.0)] = 0.1
    # A quarter of a reference std; Cohen's "small" effect is 0.2.
    mean_shift_effect: Annotated[float, msgspec.Meta(ge=0.0)] = 0.25
    # Consecutive significant-with-effect evaluations before `drift`: one odd window (a burst
    # of one client's traffic) warns but does not trigger a rollback or a retraining.
    persistence: Annotated[int, msgspec.Meta(ge=1)] = 3


class FeatureAssessment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The verdict on one feature, with its evidence."""

    name: str
    status: Status
    count: int  # non-missing samples the statistics came from
    p_value: float  # NaN if not tested
    level: float  # the corrected significance level the p-value was held to; NaN if untested
    # Critical value of each tested statistic: a numeric feature's KS and chi-square are each
    # held to level / 2, a categorical's chi-square to `level`.
    thresholds: dict[str, float]
    effect: bool  # an effect size over its configured line
    streak: int  # consecutive evaluations significant with effect


class DriftAssessment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The verdict on one model version: its worst feature's status, and every feature's."""

    status: Status
    features: tuple[FeatureAssessment, ...]


class DriftDetector:
    """Judges successive statistics of one model version, remembering each feature's streak."""

    def __init__(self, config: DriftConfig | None = None) -> None:
        """Start with no streaks under `config` (the defaults if None)."""
        self.config = config or DriftConfig()
        self._streaks: dict[str, int] = {}

    def evaluate(self, statistics: Sequence[FeatureStatistics]) -> DriftAssessment:
        """Status of every feature and of the version, from one window's statistics."""
        p_values: dict[str, float] = {}
        for s in statistics:
            if min(s.count, s.reference_count) >= self.config.min_samples:
                p_value = _p_value(s)
                if not math.isnan(p_value):
                    p_values[s.name] = p_value
        levels, significant = _correct(p_values, self.config)
        features = tuple(
            self._assess(
                s,
                p_values.get(s.name),
                levels.get(s.name, math.nan),
                significant.get(s.name, False),
            )
            for s in statistics
        )
        return DriftAssessment(status=worst([f.status for f in features]), features=features)

    def _assess(
        self, s: FeatureStatistics, p_value: float | None, level: float, significant: bool
    ) -> FeatureAssessment:
        """One feature's status; advances or resets its streak."""
        effect = _effect(s, self.config)
        streak = self._streaks.get(s.name, 0) + 1 if significant and effect else 0
        self._streaks[s.name] = streak
        status: Status
        if p_value is None:
            status = "insufficient_data"  # and the streak restarts: no stale evidence
        elif not significant:
            status = "ok"
        else:
            status = "drift" if streak >= self.config.persistence else "warn"
        return FeatureAssessment(
            name=s.name,
            status=status,
            count=s.count,
            p_value=math.nan if p_value is None else p_value,
            level=level,
            thresholds={} if p_value is None else _thresholds(s, level),
            effect=effect,
            streak=streak,
        )


def _p_value(s: FeatureStatistics) -> float:
    """A feature's p-value under no drift.

    A numeric feature is tested twice, Bonferroni over the two: KS sees a shift of the CDF,
    Pearson's chi-square over the coarse bins a change of shape (a tail, a new mode) that KS
    is slow on. Pearson's X^2 rather than n_e PSI: both approach chi-square, but at 100
    samples in 10 bins PSI's tail is about twice too heavy at level 2.5e-4, X^2's 1.3 times.
    """
    chi_square = chi_square_pvalue(s.chi_square, s.chi_square_dof)
    if isinstance(s, NumericStatistics):
        return min(1.0, 2.0 * min(ks_pvalue(s.ks, s.count, s.reference_count), chi_square))
    return chi_square


def _effect(s: FeatureStatistics, config: DriftConfig) -> bool:
    if isinstance(s, NumericStatistics) and abs(s.mean_shift) >= config.mean_shift_effect:
        return True
    return s.psi >= config.psi_effect


def _correct(
    p_values: dict[str, float], config: DriftConfig
) -> tuple[dict[str, float], dict[str, bool]]:
    """Each feature's corrected level and whether it is significant at it.

    Holm: the k-th smallest of m p-values is held to alpha / (m - k + 1), stopping at the
    first that fails; Bonferroni holds all to alpha / m. Both bound the family-wise rate.
    """
    tested = len(p_values)
    levels: dict[str, float] = {}
    significant: dict[str, bool] = {}
    rejecting = True
    for rank, name in enumerate(sorted(p_values, key=p_values.__getitem__)):
        divisor = tested - rank if config.correction == "holm" else tested
        levels[name] = config.alpha / divisor
        rejecting = rejecting and p_values[name] <= levels[name]
        significant[name] = (
            rejecting if config.correction == "holm" else (p_values[name] <= levels[name])
        )
    return levels, significant


def _thresholds(s: FeatureStatistics, level: float) -> dict[str, float]:
    if isinstance(s, NumericStatistics):
        return {
            "ks": ks_threshold(s.count, s.reference_count, level / 2),
            "chi_square": chi_square_threshold(s.chi_square_dof, level / 2),
        }
    return {"chi_square": chi_square_threshold(s.chi_square_dof, level)}


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe of `statuses`; `insufficient_data` when there are none."""
    return max(statuses, key=_SEVERITY.__getitem__, default="insufficient_data")
