"""The business value gate: a canary must not earn less per call than stable (by a margin).

Judged like the output divergence gate: the canary fails only on significant evidence that
it is worse than stable by more than the margin (a one-sided Welch t-test at `alpha`), and
passes otherwise; with fewer than `min_count` calls carrying the value in either version it
is inconclusive, never a pass and never a fail.
"""

from __future__ import annotations

from monitor.business import ValueStats
from monitor.welch import welch_test
from registry.rollout import GateResult, ValueGate

_NONE = ValueStats(count=0, total=0.0, squares=0.0)


def judge_value(
    gate: ValueGate, canary: ValueStats | None, stable: ValueStats | None
) -> GateResult:
    """The gate's verdict on the window's values of `gate.name` (None: no call has it)."""
    mine, theirs = canary or _NONE, stable or _NONE
    name = f"business:{gate.name}"
    evidence: dict[str, float | bool] = {
        "canary_count": mine.count,
        "stable_count": theirs.count,
        "canary_mean": mine.mean,
        "stable_mean": theirs.mean,
        "margin": gate.margin,
        "higher_is_better": gate.higher_is_better,
    }
    if min(mine.count, theirs.count) < gate.min_count:
        return GateResult(
            gate=name,
            verdict="inconclusive",
            evidence=evidence,
            reason=f"{gate.name} values: canary {mine.count}, stable {theirs.count}, "
            f"{gate.min_count} each needed",
        )
    # Worse means lower when higher is better: H1 is canary - stable < -margin; else
    # canary - stable > margin.
    test = welch_test(
        (mine.count, mine.mean, mine.variance),
        (theirs.count, theirs.mean, theirs.variance),
        alternative="less" if gate.higher_is_better else "greater",
        shift=-gate.margin if gate.higher_is_better else gate.margin,
    )
    evidence |= {"statistic": test.statistic, "df": test.df, "p_value": test.pvalue}
    worse = test.pvalue < gate.alpha
    compared = (
        f"{gate.name} mean {mine.mean:.4g} on canary, {theirs.mean:.4g} on stable "
        f"(margin {gate.margin:g}, {'higher' if gate.higher_is_better else 'lower'} is better)"
    )
    return GateResult(
        gate=name,
        verdict="fail" if worse else "pass",
        evidence=evidence,
        reason=f"{compared}: {'worse' if worse else 'not shown worse'}, "
        f"p = {test.pvalue:.3g} {'<' if worse else '>='} {gate.alpha:g}",
    )
