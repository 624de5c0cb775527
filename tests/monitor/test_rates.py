"""Missing, out-of-range and unseen values are judged, each on the feature that has them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from sklearn.datasets import load_breast_cancer, load_digits

from monitor import DriftConfig, DriftDetector, DriftWindow
from monitor.calibration import cohen_h, rate_pvalue
from registry.profile import profile_series

DATA = load_breast_cancer().data  # real, correlated, 569 rows
REFERENCE, LIVE = DATA[::2], DATA[1::2]  # interleaved halves: the same population


@pytest.fixture(scope="module")
def window_profiles() -> list:
    cast = REFERENCE.astype(np.float32)
    return [profile_series(pl.Series(f"f{i}", cast[:, i])) for i in range(DATA.shape[1])]


def judge(profiles: list, rows: np.ndarray, detector: DriftDetector | None = None):  # type: ignore[no-untyped-def]
    window = DriftWindow(profiles, capacity=len(rows))
    window.update(rows.astype(np.float32).astype(np.float64))
    return (detector or DriftDetector()).evaluate(window.statistics(), rows_seen=len(rows))


def test_beta_binomial_tails_match_scipy() -> None:
    for count, n, a, b in [(5, 100, 2, 999), (0, 100, 2, 999), (20, 100, 0.5, 100.5),
                           (50, 2000, 30, 970), (10, 2000, 30, 970), (100, 100, 2, 5)]:  # fmt: skip
        law = stats.betabinom(n, a, b)
        assert rate_pvalue(count, n, a, b) == pytest.approx(law.sf(count - 1), rel=1e-9)
        both = min(1.0, 2 * min(law.sf(count - 1), law.cdf(count)))
        assert rate_pvalue(count, n, a, b, two_sided=True) == pytest.approx(both, rel=1e-9)
    assert cohen_h(0.01, 0.0) == pytest.approx(0.2003, abs=1e-4)


def test_clean_halves_are_ok(window_profiles: list) -> None:
    assessment = judge(window_profiles, LIVE[:200])
    assert assessment.status == "ok", [f.reason for f in assessment.features if f.status != "ok"]


@pytest.mark.parametrize("share", [0.2, 0.6])
def test_missing_values_raise_an_alarm_on_their_feature(
    window_profiles: list, share: float
) -> None:
    rows = LIVE[:200].copy()
    rows[: int(share * 200), 7] = np.nan
    assessment = judge(window_profiles, rows)
    flagged = {f.name: f for f in assessment.features if f.status != "ok"}
    assert set(flagged) == {"f7"}
    assert flagged["f7"].significant == ("missing",)
    assert flagged["f7"].large == ("missing",)
    assert "missing" in flagged["f7"].reason


def test_infinities_raise_an_out_of_range_alarm() -> None:
    # Digits: 1797 real rows of integer pixels (heavy ties, constant columns).
    digits = load_digits().data
    cast = digits[::2].astype(np.float32)
    profiles = [profile_series(pl.Series(f"p{i}", cast[:, i])) for i in range(64)]
    rows = digits[1::2][:200].copy()
    rows[:10, 20] = np.inf  # 5%
    assessment = judge(profiles, rows)
    flagged = {f.name: f for f in assessment.features if f.status != "ok"}
    assert set(flagged) == {"p20"}
    assert "out_of_range" in flagged["p20"].significant
    assert "out_of_range" in flagged["p20"].large


def test_out_of_range_is_calibrated_to_the_reference_size(window_profiles: list) -> None:
    """285 reference rows leave their range uncertain: 5% beyond it is weak evidence there,
    10% is not."""
    rows = LIVE[:200].copy()
    rows[:10, 3] = np.inf
    assert judge(window_profiles, rows).features[3].status == "ok"
    rows[:20, 3] = np.inf
    assert judge(window_profiles, rows).features[3].significant == ("out_of_range",)


def test_unseen_categories_are_never_pooled_away() -> None:
    rng = np.random.default_rng(3)
    reference = rng.choice(["a", "b", "c", "d"], 2000, p=[0.4, 0.3, 0.2, 0.1])
    profiles = [profile_series(pl.Series("colour", reference))]
    window = DriftWindow(profiles, capacity=100)
    live = list(rng.choice(["a", "b", "c", "d"], 90, p=[0.4, 0.3, 0.2, 0.1])) + ["zz"] * 10
    window.update(window.layout.encode("colour", live).reshape(-1, 1))
    (feature,) = DriftDetector().evaluate(window.statistics(), rows_seen=100).features
    assert feature.status == "warn"
    assert feature.significant == ("unseen",)
    assert feature.large == ("unseen",)


def test_one_missing_value_leaves_the_version_judged_by_the_rest(window_profiles: list) -> None:
    rows = LIVE[:100].copy()
    rows[0, 5] = np.nan  # 99 values left: too few for that feature's distribution tests
    assessment = judge(window_profiles, rows)
    assert assessment.status == "ok"
    assert assessment.insufficient == ("f5",)
    (f5,) = [f for f in assessment.features if f.name == "f5"]
    assert f5.status == "insufficient_data"
    assert f5.tests.keys() == {"missing"}  # still tested: one missing value in 100 is fine


def test_a_feature_empty_in_the_reference_does_not_block_ok() -> None:
    rng = np.random.default_rng(4)
    profiles = [
        profile_series(pl.Series("x", rng.normal(size=1000))),
        profile_series(pl.Series("empty", [None] * 1000, dtype=pl.Float64)),
    ]
    window = DriftWindow(profiles, capacity=200)
    window.update(np.column_stack([rng.normal(size=200), np.full(200, np.nan)]))
    assessment = DriftDetector().evaluate(window.statistics(), rows_seen=200)
    assert assessment.status == "ok"
    assert [f.status for f in assessment.features] == ["ok", "insufficient_data"]
    # Values appearing where the reference never had any are a change, and are caught.
    window.update(np.column_stack([rng.normal(size=200), rng.normal(size=200)]))
    assessment = DriftDetector().evaluate(window.statistics(), rows_seen=400)
    assert assessment.features[1].significant == ("missing",)


@pytest.mark.parametrize("factor", [0.6, 1.6])
def test_spread_changes_have_an_effect_size(window_profiles: list, factor: float) -> None:
    """A narrower or wider spread about the same center: the mean does not move."""
    center = np.median(LIVE[:, 0])
    rows = LIVE[:250].copy()
    rows[:, 0] = center + factor * (rows[:, 0] - center)
    (f0, *_) = judge(window_profiles, rows, DriftDetector(DriftConfig(persistence=1))).features
    assert f0.significant
    assert abs(f0.effects["mean_shift"]) < 0.25
    # Narrower: the distribution tests see it, and the std ratio is their effect. Wider:
    # values beyond the reference range are the first (and strongest) evidence.
    assert ("std_ratio" if factor < 1 else "out_of_range") in f0.large


def test_values_moved_off_a_discrete_features_levels_are_seen() -> None:
    """The affairs survey (statsmodels wheel): occupations coded 1 to 6. Shifted by a tenth
    of a std, every value leaves its level but stays inside its quantile bin and the range;
    a level's own bin sees it, as an exact KS would."""
    import statsmodels.datasets

    fair = statsmodels.datasets.fair.load_pandas().data.to_numpy(dtype=np.float64)
    fair = fair[np.random.default_rng(5).permutation(len(fair))]  # stored sorted by affairs
    reference, live = fair[::2].astype(np.float32), fair[1::2][:100].copy()
    profiles = [profile_series(pl.Series(f"q{i}", column)) for i, column in enumerate(reference.T)]
    assert judge(profiles, live).status == "ok"
    live[:, 6] += 0.1 * reference[:, 6].std()  # occupation, coded 1 to 6
    features = judge(profiles, live).features
    assert features[6].significant == ("ks",)  # none beyond the range: only the levels see it
    assert {f.status for i, f in enumerate(features) if i != 6} == {"ok"}
