"""Thresholds agree with scipy; decisions keep their false-alarm rate and catch real drift."""

from __future__ import annotations

import msgspec
import numpy as np
import polars as pl
import pytest
from scipy import special, stats

from monitor import (
    CategoricalStatistics,
    DriftConfig,
    DriftDetector,
    DriftWindow,
    chi_square_pvalue,
    chi_square_threshold,
    ks_pvalue,
    ks_threshold,
    psi_pvalue,
    psi_threshold,
)
from monitor.calibration import kolmogorov_sf
from monitor.divergences import psi
from registry.profile import profile_series

COLORS = ["red", "green", "blue", "teal", "pink", "gold"]
SHARES = [0.5, 0.3, 0.15, 0.04, 0.009, 0.001]  # two categories rarer than 1 in 100
SHIFTED = 4  # the feature that drifts, a standard normal


def columns(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[np.ndarray]:
    """20 features: normal, skewed, discrete (ties), uniform, and two categoricals."""
    result = []
    for index in range(18):
        kind = index % 4
        if kind == 0:
            values = rng.normal(0.0, 1.0, n) + (shift if index == SHIFTED else 0.0)
        elif kind == 1:
            values = rng.lognormal(0.0, 0.7, n)
        elif kind == 2:
            values = rng.poisson(3.0, n).astype(float)
        else:
            values = rng.uniform(-1.0, 1.0, n)
        result.append(values)
    result.append(rng.choice(COLORS, n, p=SHARES))
    result.append(rng.choice(["yes", "no"], n, p=[0.2, 0.8]))
    return result


@pytest.fixture(scope="module")
def profiles() -> list:
    rng = np.random.default_rng(20)
    data = columns(rng, 20_000)
    return [profile_series(pl.Series(f"f{i}", values)) for i, values in enumerate(data)]


def rows(window: DriftWindow, rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """n rows for `window`, whose features are the first few of `columns`."""
    data = columns(rng, n, shift)[: len(window.layout.names)]
    for index in range(18, len(data)):
        data[index] = window.layout.encode(f"f{index}", data[index].tolist())
    return np.column_stack(data)


def test_kolmogorov_and_chi_square_tails_match_scipy() -> None:
    for x in [0.05, 0.3, 0.8, 0.99, 1.0, 1.2, 2.0, 3.5]:
        assert kolmogorov_sf(x) == pytest.approx(special.kolmogorov(x), rel=1e-10, abs=1e-15)
    for dof in [1, 2, 5, 9, 30, 200]:
        for x in [0.01, 0.5, dof / 2, dof, dof + 1, 2 * dof + 10, 5 * dof + 40]:
            expected = stats.chi2.sf(x, dof)
            assert chi_square_pvalue(x, dof) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("alpha", [0.05, 1e-3, 1e-6])
def test_thresholds_invert_the_p_values(alpha: float) -> None:
    n, m = 250, 20_000
    n_e = n * m / (n + m)
    assert ks_pvalue(ks_threshold(n, m, alpha), n, m) == pytest.approx(alpha, rel=1e-8)
    assert chi_square_threshold(9, alpha) == pytest.approx(stats.chi2.isf(alpha, 9), rel=1e-10)
    assert psi_threshold(n, m, 10, alpha) == pytest.approx(stats.chi2.isf(alpha, 9) / n_e)
    assert psi_pvalue(psi_threshold(n, m, 10, alpha), n, m, 10) == pytest.approx(alpha)
    # Larger windows resolve smaller changes, roughly as 1 / sqrt(n).
    assert ks_threshold(4 * n, m, alpha) < 0.6 * ks_threshold(n, m, alpha)


@pytest.mark.parametrize("n", [100, 1000])
def test_psi_threshold_holds_its_false_alarm_rate_by_simulation(n: int) -> None:
    rng = np.random.default_rng(21)
    shares = np.array([0.1] * 10)
    reference = rng.multinomial(20_000, shares).astype(float)
    threshold = psi_threshold(n, 20_000, 10, 0.05)
    windows = rng.multinomial(n, reference / reference.sum(), size=4000).astype(float)
    alarms = np.mean([psi(reference, window, 0.5) > threshold for window in windows])
    assert alarms <= 0.05


def test_no_drift_false_alarm_rate_is_under_alpha_over_500_windows(profiles: list) -> None:
    # alpha = 0.05 so that 500 windows measure the rate (about 0.03 over 2,000 windows).
    rng = np.random.default_rng(22)
    config = DriftConfig(alpha=0.05)
    detector = DriftDetector(config)
    window = DriftWindow(profiles, capacity=200)
    statuses = []
    for index in range(500):
        window.update(rows(window, rng, 200), now=0.0)  # each window replaces the last
        statuses.append(detector.evaluate(window.statistics(), rows_seen=200 * index).status)
    flagged = sum(status in ("warn", "drift") for status in statuses)
    assert "insufficient_data" not in statuses
    assert flagged <= config.alpha * len(statuses)
    assert "drift" not in statuses


def test_half_std_shift_in_one_of_20_features_is_drift_within_1000_samples(profiles: list) -> None:
    rng = np.random.default_rng(23)
    detector = DriftDetector()
    window = DriftWindow(profiles, capacity=1000)
    window.update(rows(window, rng, 1000), now=0.0)
    assert detector.evaluate(window.statistics(), rows_seen=1000).status == "ok"
    shifted = 0
    while shifted < 3000:
        window.update(rows(window, rng, 50, shift=0.5), now=0.0)
        shifted += 50
        assessment = detector.evaluate(window.statistics(), rows_seen=1000 + shifted)
        others = [f.status for i, f in enumerate(assessment.features) if i != SHIFTED]
        assert "drift" not in others
        if assessment.features[SHIFTED].status == "drift":
            break
    assert assessment.status == "drift"
    feature = assessment.features[SHIFTED]
    assert feature.fresh_rows >= 1000  # a whole window of rows after the streak began
    assert feature.significant
    assert "mean_shift" in feature.large
    # The first significant window, once the effect line (0.25 std) is passed with half the
    # window shifted, then one more window of fresh rows: about 1,400 to 1,600 samples.
    assert shifted <= 1800


def test_too_few_samples_is_insufficient_data(profiles: list) -> None:
    window = DriftWindow(profiles, capacity=500)
    window.update(rows(window, np.random.default_rng(24), 99), now=0.0)
    assessment = DriftDetector().evaluate(window.statistics(), rows_seen=99)
    assert assessment.status == "insufficient_data"
    assert {f.status for f in assessment.features} == {"insufficient_data"}
    assert assessment.insufficient == tuple(window.layout.names)


def test_significant_without_effect_warns_and_never_drifts(profiles: list) -> None:
    rng = np.random.default_rng(25)
    detector = DriftDetector()
    window = DriftWindow(profiles[:8], capacity=20_000)
    for index in range(4):
        window.update(rows(window, rng, 20_000, shift=0.1), now=0.0)
        feature = detector.evaluate(window.statistics(), rows_seen=20_000 * index).features[SHIFTED]
        assert feature.status == "warn"
        assert not feature.effect
        assert feature.thresholds["ks"] < window.statistics()[SHIFTED].ks


def test_drift_needs_persistence_and_a_clean_window_resets_it(profiles: list) -> None:
    rng = np.random.default_rng(26)
    detector = DriftDetector(DriftConfig(persistence=3))
    window = DriftWindow(profiles[:8], capacity=300)
    seen = []
    for index, shift in enumerate([1.0, 1.0, 1.0, 1.0, 0.0, 1.0]):
        window.update(rows(window, rng, 300, shift=shift), now=0.0)
        feature = detector.evaluate(window.statistics(), rows_seen=300 * index).features[SHIFTED]
        seen.append((feature.status, feature.streak))
    assert seen == [("warn", 1), ("warn", 2), ("drift", 3), ("drift", 4), ("ok", 0), ("warn", 1)]


def test_drift_needs_a_window_of_fresh_rows_not_only_evaluations(profiles: list) -> None:
    """Evaluations every 30 rows of a 300-row window share 90% of their rows: the streak
    reaches `persistence` long before it has seen a window of new evidence."""
    rng = np.random.default_rng(27)
    detector = DriftDetector(DriftConfig(persistence=3))
    window = DriftWindow(profiles[:8], capacity=300)
    window.update(rows(window, rng, 300, shift=1.0), now=0.0)
    streaming = []
    for step in range(12):
        window.update(rows(window, rng, 30, shift=1.0), now=0.0)
        feature = detector.evaluate(window.statistics(), rows_seen=300 + 30 * step).features
        streaming.append((feature[SHIFTED].status, feature[SHIFTED].fresh_rows))
    # The streak began at rows_seen 300 with a window of 300: drift once 300 more arrived.
    assert streaming[:10] == [("warn", 30 * step) for step in range(10)]
    assert streaming[10:] == [("drift", 300), ("drift", 330)]


def chi_square_feature(name: str, p_value: float) -> CategoricalStatistics:
    """A categorical feature whose chi-square test has p-value `p_value` / 0.8: its
    weighted-Bonferroni share of the feature's level is 0.8, so the feature's is `p_value`."""
    return CategoricalStatistics(
        name=name, count=1000, reference_count=10_000, missing=0, reference_missing=0,
        missing_rate=0.0, unseen=0, unseen_rate=0.0, reference_singletons=0,
        psi=0.5, psi_bins=4, js=0.1, hellinger=0.1,
        chi_square=float(stats.chi2.isf(p_value * 0.8, 3)), chi_square_dof=3,
    )  # fmt: skip


def test_holm_rejects_at_least_what_bonferroni_does() -> None:
    features = [chi_square_feature(name, p) for name, p in [("a", 0.001), ("b", 0.02), ("c", 0.04)]]
    holm = DriftDetector(DriftConfig(alpha=0.05, persistence=1)).evaluate(features, rows_seen=0)
    bonferroni = DriftDetector(DriftConfig(alpha=0.05, persistence=1, correction="bonferroni"))
    fixed = bonferroni.evaluate(features, rows_seen=0)
    # Holm: 0.001 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05/1; Bonferroni: all against 0.05/3.
    # Warn, not drift: the first window of a streak has not yet seen a window of fresh rows.
    assert [f.status for f in holm.features] == ["warn", "warn", "warn"]
    assert [f.status for f in fixed.features] == ["warn", "ok", "ok"]
    assert [f.level for f in holm.features] == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])
    assert all(f.level == pytest.approx(0.05 / 3) for f in fixed.features)
    # Holm stops at the first p-value over its level: nothing after it is rejected.
    stopped = DriftDetector(DriftConfig(alpha=0.05, persistence=1)).evaluate(
        [
            chi_square_feature("a", 0.001),
            chi_square_feature("b", 0.03),
            chi_square_feature("c", 0.04),
        ],
        rows_seen=0,
    )
    assert [f.status for f in stopped.features] == ["warn", "ok", "ok"]


def test_config_is_frozen_and_rejects_unknown_fields() -> None:
    config = msgspec.json.decode(b'{"alpha": 0.05, "persistence": 2}', type=DriftConfig)
    assert config.alpha == 0.05
    assert config.min_samples == DriftConfig().min_samples
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"alpah": 0.05}', type=DriftConfig)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `float` < 1\.0"):
        msgspec.json.decode(b'{"alpha": 5}', type=DriftConfig)
    with pytest.raises(AttributeError):
        config.alpha = 0.1  # type: ignore[misc]
