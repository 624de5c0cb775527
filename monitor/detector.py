"""Drift decisions for one model version: ok, warn, drift or insufficient data.

Each feature is tested in several respects, each with its own calibrated test: its
distribution (KS and Pearson's chi-square on the values present), its missing rate, and its
values outside the reference range (numeric) or never seen in it (categorical). The tests of
a feature are combined by weighted Bonferroni, so each keeps most of the feature's level,
and the features of a version are corrected together (Holm or Bonferroni): `alpha` bounds
the chance that one evaluation of a drift-free version flags any feature.

Significance alone is `warn`. `drift` also needs an effect size over its line in the same
respect as a significant test (`EFFECT_RULES`), in `persistence` consecutive evaluations
that span at least one window's worth of rows the evaluation starting the streak did not
see: consecutive windows share most rows, so counting evaluations alone would count the
same evidence again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from monitor.calibration import (
    chi_square_pvalue,
    chi_square_threshold,
    cohen_h,
    ks_pvalue,
    ks_threshold,
    rate_pvalue,
)
from monitor.drift_config import DriftConfig
from monitor.layout import CategoricalStatistics, FeatureStatistics, NumericStatistics

Status = Literal["ok", "warn", "drift", "insufficient_data"]
Test = Literal["ks", "chi_square", "missing", "out_of_range", "unseen"]
Effect = Literal["psi", "mean_shift", "std_ratio", "tails", "missing", "out_of_range", "unseen"]
_SEVERITY: dict[Status, int] = {"insufficient_data": 0, "ok": 1, "warn": 2, "drift": 3}

# Share of a feature's level each test is held to (weighted Bonferroni: the weights sum to
# 1, so the feature's p-value min(p_t / w_t) is valid). The distribution tests get most: a
# new missing, out-of-range or unseen rate is usually far past any level and needs little.
# KS gets more than chi-square: on real data (breast cancer, n = 100) its share decides the
# power on small shifts against an exact KS, while chi-square is there for tails and modes.
WEIGHTS: Final[dict[str, dict[Test, float]]] = {
    "numeric": {"ks": 0.5, "chi_square": 0.3, "missing": 0.1, "out_of_range": 0.1},
    "categorical": {"chi_square": 0.8, "missing": 0.1, "unseen": 0.1},
}
# Which effect sizes can turn a significant test into drift: the same respect, so that a
# barely significant missing rate cannot borrow a noisy PSI.
EFFECT_RULES: Final[dict[Test, tuple[Effect, ...]]] = {
    "ks": ("psi", "mean_shift", "std_ratio", "tails"),
    "chi_square": ("psi", "mean_shift", "std_ratio", "tails"),
    "missing": ("missing",),
    "out_of_range": ("out_of_range",),
    "unseen": ("unseen",),
}
_DISTRIBUTION: Final[frozenset[Test]] = frozenset({"ks", "chi_square"})


class FeatureAssessment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The verdict on one feature, with its evidence."""

    name: str
    status: Status
    count: int  # non-missing samples the distribution tests came from
    p_value: float  # the feature's p-value over its tests, NaN if none ran
    level: float  # the corrected level the p-value was held to; NaN if none ran
    tests: dict[str, float]  # p-value of each test that ran
    significant: tuple[str, ...]  # tests under their share of `level`
    # Critical value of each distribution statistic at its share of `level`.
    thresholds: dict[str, float]
    effects: dict[str, float]  # effect sizes: psi, mean_shift, std_ratio, h of the rates
    large: tuple[str, ...]  # effects over their line, paired with a significant test
    effect: bool  # any of `large`
    streak: int  # consecutive evaluations significant with effect
    fresh_rows: int  # rows seen since the streak began (0 without a streak)
    reason: str  # the verdict in words


class DriftAssessment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The verdict on one model version: its worst tested feature's status, and every one's.

    Features with too little data do not decide the status unless none has enough; they
    are named in `insufficient`.
    """

    status: Status
    features: tuple[FeatureAssessment, ...]
    insufficient: tuple[str, ...]
    rules: DriftConfig  # the lines and levels these verdicts were held to


class _Streak(msgspec.Struct):
    length: int
    started_at_rows: int  # the stream's `rows_seen` when the streak began
    window_rows: int  # rows in the window that began it: how many fresh rows drift needs


class DriftDetector:
    """Judges successive statistics of one model version, remembering each feature's streak."""

    def __init__(self, config: DriftConfig | None = None) -> None:
        """Start with no streaks under `config` (the defaults if None)."""
        self.config = config or DriftConfig()
        self._streaks: dict[str, _Streak] = {}

    def evaluate(
        self, statistics: Sequence[FeatureStatistics], *, rows_seen: int
    ) -> DriftAssessment:
        """Status of every feature and of the version, from one window's statistics.

        Args:
            statistics: Every feature's statistics over the window.
            rows_seen: Rows the monitored stream has produced so far, counted from any
                fixed origin (never decreasing): how `drift` knows fresh rows arrived.
        """
        tests = {s.name: self._tests(s) for s in statistics}
        p_values = {
            name: min(1.0, *(p / _weight(s, test) for test, p in tests[name].items()))
            for name, s in zip(tests, statistics, strict=True)
            if tests[name]
        }
        levels, significant = _correct(p_values, self.config)
        features = tuple(
            self._assess(
                s,
                tests[s.name],
                p_values.get(s.name, math.nan),
                levels.get(s.name, math.nan),
                rejected=significant.get(s.name, False),
                rows_seen=rows_seen,
            )
            for s in statistics
        )
        insufficient = tuple(f.name for f in features if f.status == "insufficient_data")
        return DriftAssessment(
            status=worst([f.status for f in features]),
            features=features,
            insufficient=insufficient,
            rules=self.config,
        )

    def _tests(self, s: FeatureStatistics) -> dict[str, float]:
        """The p-value of every test of `s` with enough data on both sides."""
        enough = self.config.min_samples
        tests: dict[str, float] = {}
        if min(s.count, s.reference_count) >= enough:
            chi_square = chi_square_pvalue(s.chi_square, s.chi_square_dof)
            if not math.isnan(chi_square):
                tests["chi_square"] = chi_square
            if isinstance(s, NumericStatistics) and not math.isnan(s.ks):
                tests["ks"] = ks_pvalue(s.ks, s.count, s.reference_count)
            if isinstance(s, NumericStatistics) and s.reference_count >= 2:
                # Under no drift a new value falls outside the range of m reference values
                # at a rate distributed Beta(2, m - 1) (two of m + 1 exchangeable values
                # are the extremes); ties only make it rarer, so the test stays valid.
                a, b = 2.0, s.reference_count - 1.0
                tests["out_of_range"] = rate_pvalue(s.out_of_range, s.count, a, b)
            if isinstance(s, CategoricalStatistics):
                # Good-Turing: the chance of a new category is about the share of
                # categories seen once; Beta(N1 + 1, m - N1 + 1) carries its uncertainty.
                singletons = s.reference_singletons
                a, b = singletons + 1.0, s.reference_count - singletons + 1.0
                tests["unseen"] = rate_pvalue(s.unseen, s.count, a, b)
        rows, reference_rows = s.count + s.missing, s.reference_count + s.reference_missing
        if min(rows, reference_rows) >= enough:
            # Missing-rate changes count both ways: a field that stops being missing is new.
            a, b = s.reference_missing + 0.5, s.reference_count + 0.5  # Jeffreys prior
            tests["missing"] = rate_pvalue(s.missing, rows, a, b, two_sided=True)
        return tests

    def _assess(
        self,
        s: FeatureStatistics,
        tests: dict[str, float],
        p_value: float,
        level: float,
        *,
        rejected: bool,
        rows_seen: int,
    ) -> FeatureAssessment:
        """One feature's status; advances or resets its streak."""
        significant = tuple(
            test for test, p in tests.items() if rejected and p <= _weight(s, test) * level
        )
        effects = _effects(s)
        lines = _lines(self.config)
        large = tuple(
            dict.fromkeys(
                effect
                for test in significant
                for effect in EFFECT_RULES[test]  # type: ignore[index]
                if effect in effects and _over(effect, effects[effect], lines[effect])
            )
        )
        streak = self._advance(s, rows_seen, bool(large))
        status: Status
        if not tests or (not significant and not _DISTRIBUTION & tests.keys()):
            status = "insufficient_data"  # a streak restarts: no stale evidence
        elif not significant:
            status = "ok"
        elif streak is not None and self._persisted(streak, rows_seen):
            status = "drift"
        else:
            status = "warn"
        fresh = rows_seen - streak.started_at_rows if streak else 0
        return FeatureAssessment(
            name=s.name,
            status=status,
            count=s.count,
            p_value=p_value,
            level=level,
            tests=tests,
            significant=significant,
            thresholds=_thresholds(s, tests, level),
            effects=effects,
            large=large,
            effect=bool(large),
            streak=streak.length if streak else 0,
            fresh_rows=fresh,
            reason=_reason(
                s, status=status, significant=significant, tests=tests, effects=effects, large=large
            ),
        )

    def _advance(self, s: FeatureStatistics, rows_seen: int, evidence: bool) -> _Streak | None:
        if not evidence:
            self._streaks.pop(s.name, None)
            return None
        streak = self._streaks.get(s.name)
        if streak is None:
            streak = _Streak(0, rows_seen, s.count + s.missing)
            self._streaks[s.name] = streak
        streak.length += 1
        return streak

    def _persisted(self, streak: _Streak, rows_seen: int) -> bool:
        fresh = rows_seen - streak.started_at_rows
        return streak.length >= self.config.persistence and fresh >= streak.window_rows


def _weight(s: FeatureStatistics, test: str) -> float:
    kind = "numeric" if isinstance(s, NumericStatistics) else "categorical"
    return WEIGHTS[kind][test]  # type: ignore[index]


def _effects(s: FeatureStatistics) -> dict[str, float]:
    """Every effect size of `s` that is defined (not NaN)."""
    reference_rows = s.reference_count + s.reference_missing
    reference_missing = s.reference_missing / reference_rows if reference_rows else math.nan
    effects = {"psi": s.psi, "missing": _h(s.missing_rate, reference_missing)}
    if isinstance(s, NumericStatistics):
        effects["mean_shift"] = s.mean_shift
        effects["std_ratio"] = s.std_ratio
        effects["tails"] = _h(s.tail_rate, s.reference_tail_rate)
        effects["out_of_range"] = _h(s.out_of_range_rate, 2.0 / (s.reference_count + 1.0))
    else:
        expected = (s.reference_singletons + 1.0) / (s.reference_count + 2.0)
        effects["unseen"] = _h(s.unseen_rate, expected)
    return {name: value for name, value in effects.items() if not math.isnan(value)}


def _lines(config: DriftConfig) -> dict[str, float]:
    rate = config.rate_effect
    return {
        "psi": config.psi_effect,
        "mean_shift": config.mean_shift_effect,
        "std_ratio": config.std_ratio_effect,
        "tails": rate,
        "missing": rate,
        "out_of_range": rate,
        "unseen": rate,
    }


def _over(effect: str, value: float, line: float) -> bool:
    if effect == "std_ratio":  # a ratio: wider or narrower by the same factor
        return value >= line or (value > 0.0 and 1.0 / value >= line)
    if effect in ("psi", "mean_shift", "missing"):
        return abs(value) >= line
    return value >= line  # more values out of range, unseen or in the tails


def _h(rate: float, reference_rate: float) -> float:
    if math.isnan(rate) or math.isnan(reference_rate):
        return math.nan
    return cohen_h(min(max(rate, 0.0), 1.0), min(max(reference_rate, 0.0), 1.0))


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


def _thresholds(s: FeatureStatistics, tests: dict[str, float], level: float) -> dict[str, float]:
    thresholds = {}
    if "ks" in tests:
        share = _weight(s, "ks") * level
        thresholds["ks"] = ks_threshold(s.count, s.reference_count, share)
    if "chi_square" in tests:
        share = _weight(s, "chi_square") * level
        thresholds["chi_square"] = chi_square_threshold(s.chi_square_dof, share)
    return thresholds


_WORDS: Final[dict[str, str]] = {
    "psi": "PSI {:.3g}",
    "mean_shift": "mean moved {:+.2f} std",
    "std_ratio": "spread x{:.2f}",
    "tails": "tails h {:+.2f}",
    "missing": "missing rate h {:+.2f}",
    "out_of_range": "out-of-range rate h {:+.2f}",
    "unseen": "unseen-category rate h {:+.2f}",
}


def _reason(
    s: FeatureStatistics,
    *,
    status: Status,
    significant: tuple[str, ...],
    tests: dict[str, float],
    effects: dict[str, float],
    large: tuple[str, ...],
) -> str:
    """The verdict in a sentence an operator reads: which test, which effect, how large."""
    if status == "insufficient_data":
        if not tests:
            return f"too few values to test ({s.count} present, {s.missing} missing)"
        return f"only {s.count} values present: distribution untested; missing rate ok"
    if not significant:
        return "no test significant"
    found = ", ".join(f"{test} p={tests[test]:.2g}" for test in significant)
    sizes = ", ".join(_WORDS[effect].format(effects[effect]) for effect in large)
    if status == "warn" and not large:
        return f"significant ({found}) but every effect size under its line"
    return f"{found}; {sizes}" if sizes else found


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe of `statuses`; `insufficient_data` when nothing else was decided."""
    return max(statuses, key=_SEVERITY.__getitem__, default="insufficient_data")
