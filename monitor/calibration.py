"""No-drift distributions of the drift statistics, for a window of n against a reference of m.

A fixed PSI of 0.1 is noise at 100 samples and blind at 100,000, so each statistic is judged
against its distribution when nothing drifted, at the window's size n and the reference's
size m, in closed form: Kolmogorov's distribution for KS, chi-square for PSI and Pearson's
test. Both samples are random, so the tests use the effective size n_e = n m / (n + m).
Nothing here needs scipy (a development-only dependency); tests compare with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache


def _effective_size(n: int, m: int) -> float:
    """n m / (n + m): the size a one-sample test would have, the reference being a sample too."""
    return n * m / (n + m)


def _ks_scale(n: int, m: int) -> float:
    # Stephens' small-sample correction to the asymptotic sqrt(n_e) (Numerical Recipes 14.3).
    root = math.sqrt(_effective_size(n, m))
    return root + 0.12 + 0.11 / root


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """P(D > statistic) for the two-sample KS statistic of samples of n and m, no drift.

    Conservative for the binned statistic, which never exceeds the exact one.
    """
    return kolmogorov_sf(_ks_scale(n, m) * statistic)


@lru_cache(maxsize=4096)
def ks_threshold(n: int, m: int, alpha: float) -> float:
    """The KS statistic that samples of n and m exceed with probability alpha, no drift."""
    return _inverse(kolmogorov_sf, alpha) / _ks_scale(n, m)


def psi_pvalue(statistic: float, n: int, m: int, bins: int) -> float:
    """P(PSI > statistic) over `bins` bins for samples of n and m, no drift.

    To second order PSI is the symmetrized KL divergence, sum (q - p)^2 / p, so n_e PSI with
    n_e = n m / (n + m) is approximately Pearson's chi-square with bins - 1 dof. It holds at
    level 0.05 from 100 samples in 10 bins on (simulated), but its far tail is heavier: at
    level 2.5e-4 and 100 samples it rejects about twice too often. The detector therefore
    tests Pearson's X^2 and keeps PSI as an effect size.
    """
    if bins <= 1:
        return 1.0
    return chi_square_pvalue(statistic * _effective_size(n, m), bins - 1)


@lru_cache(maxsize=4096)
def psi_threshold(n: int, m: int, bins: int, alpha: float) -> float:
    """The PSI that samples of n and m exceed with probability alpha, no drift."""
    if bins <= 1:
        return math.inf
    return chi_square_threshold(bins - 1, alpha) / _effective_size(n, m)


def chi_square_pvalue(statistic: float, dof: int) -> float:
    """P(X > statistic) for X chi-square with `dof` degrees of freedom: Q(dof / 2, x / 2)."""
    if dof <= 0:
        return math.nan if math.isnan(statistic) else 1.0  # NaN: nothing to test
    return _gamma_q(dof / 2.0, statistic / 2.0)


@lru_cache(maxsize=4096)
def chi_square_threshold(dof: int, alpha: float) -> float:
    """The chi-square value exceeded with probability alpha."""
    if dof <= 0:
        return math.inf
    return _inverse(lambda x: chi_square_pvalue(x, dof), alpha)


def rate_pvalue(count: int, n: int, a: float, b: float, *, two_sided: bool = False) -> float:
    """P-value of `count` events in `n` values when the event's rate is Beta(a, b) a priori.

    Under no drift the window's count of an event (a missing value, a value outside the
    reference range, a category the reference never showed) is beta-binomial: the rate is
    only known from the reference, so it is itself uncertain. `a` and `b` come from what
    the reference showed (see `monitor.detector`). One-sided (more events) unless
    `two_sided`, which doubles the smaller tail.
    """
    if n <= 0 or count < 0 or count > n:
        return math.nan
    upper = _beta_binomial_tail(count, n, a, b, upward=True)
    if not two_sided:
        return upper
    lower = _beta_binomial_tail(count, n, a, b, upward=False)
    return min(1.0, 2.0 * min(upper, lower))


def _beta_binomial_tail(count: int, n: int, a: float, b: float, *, upward: bool) -> float:
    """P(X >= count) if `upward`, else P(X <= count), for X ~ BetaBinomial(n, a, b).

    The tail away from the mean is summed from `count` outwards, term by term with the
    ratio pmf(x + 1) / pmf(x) = (n - x) (x + a) / ((x + 1) (n - x - 1 + b)), until the
    terms stop mattering: a handful of terms in the tails an alarm lives in. The tail
    through the mean is one minus the other side's tail.
    """
    mean = n * a / (a + b)
    if upward and count <= mean:
        return 1.0 - _beta_binomial_tail(count - 1, n, a, b, upward=False) if count > 0 else 1.0
    if not upward and count >= mean:
        return 1.0 - _beta_binomial_tail(count + 1, n, a, b, upward=True) if count < n else 1.0
    term = math.exp(
        math.lgamma(n + 1)
        - math.lgamma(count + 1)
        - math.lgamma(n - count + 1)
        + _log_beta(count + a, n - count + b)
        - _log_beta(a, b)
    )
    total, x = 0.0, count
    while term > 0.0:
        total += term
        if term < 1e-17 * total or x == (n if upward else 0):
            break
        if upward:
            term *= (n - x) * (x + a) / ((x + 1) * (n - x - 1 + b))
            x += 1
        else:
            term *= x * (n - x + b) / ((n - x + 1) * (x - 1 + a))
            x -= 1
    return min(1.0, total)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def cohen_h(rate: float, reference_rate: float) -> float:
    """Cohen's h between two proportions: 2 asin(sqrt(rate)) - 2 asin(sqrt(reference_rate)).

    A difference of rates on the scale where their sampling noise is even, so one line
    serves every base rate: 0.2 is Cohen's "small" effect, 0 to 1% or 50 to 60%.
    """
    return 2.0 * math.asin(math.sqrt(rate)) - 2.0 * math.asin(math.sqrt(reference_rate))


def kolmogorov_sf(x: float) -> float:
    """P(K > x), K Kolmogorov's limit of sqrt(n) D: 2 sum_(k>=1) (-1)^(k-1) exp(-2 k^2 x^2).

    Below x = 1 that series converges slowly; the equivalent theta-function form
    P(K <= x) = sqrt(2 pi) / x sum_(k>=1) exp(-(2k - 1)^2 pi^2 / (8 x^2)) converges fast.
    """
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 1.0
    total = 0.0
    if x < 1.0:
        for k in range(1, 50):
            term = math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x))
            total += term
            if term < 1e-17 * total:
                break
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / x * total))
    for k in range(1, 100):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-300 or term < 1e-17 * total:
            break
    return min(1.0, max(0.0, 2.0 * total))


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x): series below a + 1, else Lentz's continued
    fraction (Numerical Recipes 6.2), each to double precision."""
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 1.0
    prefactor = math.exp(a * math.log(x) - x - math.lgamma(a))
    if x < a + 1.0:
        term = total = 1.0 / a
        shape = a
        while term > total * 1e-16:
            shape += 1.0
            term *= x / shape
            total += term
        return max(0.0, 1.0 - total * prefactor)
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    result = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return prefactor * result


def _inverse(survival: Callable[[float], float], alpha: float) -> float:
    """x with survival(x) = alpha, for a survival function falling from 1 at x = 0.

    Regula falsi, Illinois variant, on log survival(x) - log alpha: nearly linear in x in the
    tails (log Q ~ -x / 2 for chi-square), so a few evaluations reach double precision.
    """
    target = math.log(alpha)

    def gap(x: float) -> float:
        return math.log(max(survival(x), 1e-300)) - target

    low, high = 0.0, 1.0
    gap_low, gap_high = -target, gap(high)
    while gap_high > 0.0:
        low, gap_low, high = high, gap_high, high * 2.0
        gap_high = gap(high)
    middle, side = high, 0
    for _ in range(100):
        middle = (low * gap_high - high * gap_low) / (gap_high - gap_low)
        value = gap(middle)
        if abs(value) < 1e-12 or high - low < 1e-14 * high:
            break
        if value > 0.0:  # still above alpha: the root is to the right
            low, gap_low = middle, value
            gap_high = gap_high / 2.0 if side == -1 else gap_high
            side = -1
        else:
            high, gap_high = middle, value
            gap_low = gap_low / 2.0 if side == 1 else gap_low
            side = 1
    return middle
