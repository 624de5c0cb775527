"""How drift is decided: the levels and effect-size lines of `monitor.detector`.

A module of its own so that reading the settings loads no statistics (`gateway.settings`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class DriftConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How drift is decided; the defaults suit windows of a few hundred to some thousand rows.

    Bounds are checked when the configuration is decoded (`msgspec.json.decode`).
    """

    # Chance that one evaluation of a drift-free version flags any feature. 1% of one
    # evaluation a minute is a spurious `warn` every ~2 h; `drift` needs far more.
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.01
    # Holm controls the same family-wise rate as Bonferroni and never rejects less.
    correction: Literal["holm", "bonferroni"] = "holm"
    # A test with fewer values is not run: below ~10 per decile bin the tests' chi-square
    # and Kolmogorov approximations, and any histogram, are unreliable.
    min_samples: Annotated[int, msgspec.Meta(ge=1)] = 100
    # The customary "moderate shift" line of PSI, over the coarse (decile) bins.
    psi_effect: Annotated[float, msgspec.Meta(ge=0.0)] = 0.1
    # A quarter of a reference std; Cohen's "small" effect is 0.2.
    mean_shift_effect: Annotated[float, msgspec.Meta(ge=0.0)] = 0.25
    # Spread: window std over reference std at least this, or at most its inverse.
    std_ratio_effect: Annotated[float, msgspec.Meta(ge=1.0)] = 1.25
    # Cohen's h between window and reference rates (missing, out of range, unseen, tails):
    # 0.2 is "small", e.g. 0% to 1% or 10% to 16%; one line for every base rate.
    rate_effect: Annotated[float, msgspec.Meta(ge=0.0)] = 0.2
    # Consecutive significant-with-effect evaluations before `drift`, which also needs a
    # window's worth of fresh rows since the streak began: one odd window (a burst of one
    # client's traffic) warns but triggers no rollback or retraining.
    persistence: Annotated[int, msgspec.Meta(ge=1)] = 3
