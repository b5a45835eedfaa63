"""needlecare.outcomes.stats against numpy/scipy on the same values (to 1e-9)."""

from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from needlecare.outcomes import stats


def approx(value: Any) -> Any:
    """Equal to 1e-9 (absolute), the tolerance the issue asks for."""
    return pytest.approx(value, rel=0, abs=1e-9)


def _sql_like_bounds(values: list[float]) -> list[tuple[float, float | None]]:
    """What the SQL returns: the order statistics at the ranks the rank test picks (1-based)."""
    ordered = sorted(values)
    n = len(ordered)
    bounds: list[tuple[float, float | None]] = []
    for k, d in stats.QUARTILES:
        low = [x for rn, x in enumerate(ordered, 1) if d * (rn - 1) <= (n - 1) * k < d * rn]
        high = [x for rn, x in enumerate(ordered, 1) if d * (rn - 2) <= (n - 1) * k < d * (rn - 1)]
        assert len(low) == 1 and len(high) <= 1
        bounds.append((low[0], high[0] if high else None))
    return bounds


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10, 19, 20, 21, 38, 101])
def test_summary_matches_numpy_and_scipy(n: int) -> None:
    rng = np.random.default_rng(1000 + n)
    values = list(rng.normal(-1.7, 2.3, size=n).round(3))
    mean = float(np.mean(values))
    ssd = float(np.sum((np.array(values) - mean) ** 2))

    summary = stats.summarise(n, mean, ssd, _sql_like_bounds(values))

    q1, median, q3 = np.percentile(values, [25, 50, 75])
    assert summary.n == n
    assert summary.mean == approx(np.mean(values))
    assert summary.q1 == approx(q1)
    assert summary.median == approx(median)
    assert summary.q3 == approx(q3)
    if n == 1:
        assert summary.sd is None and summary.ci_low is None and summary.ci_high is None
        return
    low, high = sps.t.interval(0.95, n - 1, loc=np.mean(values), scale=sps.sem(values))
    assert summary.sd == approx(np.std(values, ddof=1))
    assert summary.ci_low == approx(low)
    assert summary.ci_high == approx(high)


def test_integer_values_with_ties_match_numpy_percentiles() -> None:
    rng = np.random.default_rng(7)
    for n in range(1, 60):
        values = [float(v) for v in rng.integers(-8, 4, size=n)]
        expected = np.percentile(values, [25, 50, 75])
        got = [
            stats.interpolate(lo, hi, stats.quantile_ranks(n, k, d)[2])
            for (k, d), (lo, hi) in zip(stats.QUARTILES, _sql_like_bounds(values), strict=True)
        ]
        assert got == approx(list(expected))


def test_empty_summary() -> None:
    summary = stats.summarise(0, None, None, [(None, None)] * 3)
    assert summary.n == 0 and summary.mean is None and summary.median is None


def test_quantile_ranks() -> None:
    assert stats.quantile_ranks(5, 1, 4) == (2, 3, 0.0)  # h = 1
    assert stats.quantile_ranks(4, 1, 4) == (1, 2, 0.75)  # h = 0.75
    assert stats.quantile_ranks(4, 2, 4) == (2, 3, 0.5)
    with pytest.raises(ValueError):
        stats.quantile_ranks(0, 1, 2)


@pytest.mark.parametrize("n", [1, 2, 10, 11, 19, 20, 57, 400])
def test_wilson_matches_scipy(n: int) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        if not 0 <= k <= n:
            continue
        expected = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        got = stats.wilson(k, n)
        assert got is not None
        assert got[0] == approx(expected.low)
        assert got[1] == approx(expected.high)


def test_wilson_edges() -> None:
    assert stats.wilson(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson(3, 2)
    assert approx(1.959963984540054) == stats.Z95


def _reference_median(result: sps._survival.ECDFResult) -> float | None:
    for time, probability in zip(result.sf.quantiles, result.sf.probabilities, strict=True):
        if probability <= 0.5 + stats.KM_MEDIAN_TOLERANCE:
            return float(time)
    return None


@pytest.mark.parametrize("seed", range(8))
def test_kaplan_meier_matches_scipy_ecdf(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(15, 60))
    times = rng.integers(0, 40, size=n)  # whole days: many ties, also between events and censorings
    observed = rng.random(n) < 0.6
    reference = sps.ecdf(sps.CensoredData(uncensored=times[observed], right=times[~observed]))

    rows: dict[int, list[int]] = {}
    for t, event in zip(times.tolist(), observed.tolist(), strict=True):
        rows.setdefault(t, [0, 0])[0 if event else 1] += 1
    km = stats.kaplan_meier((t, e, c) for t, (e, c) in rows.items())

    curve = dict(zip(km.times, km.survival, strict=True))
    assert set(curve) == set(reference.sf.quantiles.tolist())
    for time, probability in zip(reference.sf.quantiles, reference.sf.probabilities, strict=True):
        assert curve[float(time)] == approx(probability)
    assert km.median == _reference_median(reference)
    assert km.subjects == n
    assert km.total_events == int(observed.sum())


def test_kaplan_meier_median_conventions() -> None:
    # S falls to exactly 0.5 at t = 2: the median is 2 (first time S <= 0.5), not the midpoint 2.5.
    assert stats.kaplan_meier([(1, 1, 0), (2, 1, 0), (3, 1, 0), (4, 1, 0)]).median == 2
    # 0.5 reached through a running product (3/4 * 2/3): still the first time S <= 0.5.
    km = stats.kaplan_meier([(1, 1, 0), (2, 1, 0), (9, 0, 2)])
    assert km.survival == approx((0.75, 0.5, 0.5))
    assert km.median == 2
    km = stats.kaplan_meier([(5, 1, 0), (6, 1, 0), (7, 0, 1), (9, 0, 1)])
    assert km.median == 6
    # Never reaches 0.5: not reached.
    assert stats.kaplan_meier([(3, 1, 0), (5, 0, 4)]).median is None
    # Censored at the event time are still at risk then.
    km = stats.kaplan_meier([(2, 1, 1), (2, 0, 0), (4, 1, 0)])
    assert km.at_risk == (3, 1) and km.survival == approx((2 / 3, 0.0))
    assert stats.kaplan_meier([]).median is None
    with pytest.raises(ValueError):
        stats.kaplan_meier([(1, -1, 0)])
