"""Statistics finished in Python from aggregates the database returns (no database access here).

The SQL in ``needlecare.outcomes.statements`` returns, per group, small aggregates rather than answer rows; this module
turns them into the figures of domain.md §5.1:

- **Mean with a 95 % t-interval** from ``n``, the mean and the sum of squared deviations from the mean (SQL
  computes the mean with a window ``AVG`` and then ``SUM((x - mean)^2)``: a two-pass computation, so the
  variance does not suffer the cancellation of ``sum(x^2) - sum(x)^2 / n``). Sample SD with ``n - 1``
  (numpy ``ddof=1``); quantile from ``scipy.stats.t.ppf``.
- **Quartiles** by linear interpolation between order statistics: numpy's default ``method="linear"``,
  PostgreSQL's ``percentile_cont`` and R's type 7. For probability ``p`` the 0-based position is
  ``h = (n - 1) p``; SQL returns the order statistics at 1-based ranks ``floor(h) + 1`` and ``floor(h) + 2``
  (see :func:`quantile_ranks`), and :func:`interpolate` finishes ``x_lo + (h - floor(h)) (x_hi - x_lo)``.
- **Wilson score interval** for a proportion (no continuity correction), ``z = norm.ppf(0.975)``; the
  same formula as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
- **Kaplan-Meier** survival from rows aggregated per distinct time ``(time, events, censored)``.
  Conventions: subjects censored at a time are still at risk at that time (censoring after events, as in
  scipy.stats.ecdf, lifelines and R's survfit); the **median** is the first time at which ``S(t) <= 0.5``
  (lifelines' convention; R instead averages two times when the curve sits exactly on 0.5). A tolerance of
  1e-12 absorbs rounding in the running product, so a curve that is exactly 0.5 in exact arithmetic counts
  as having reached it. ``None`` when the curve never reaches 0.5 ("not reached").
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import sqrt
from statistics import NormalDist

CONFIDENCE = 0.95
Z95 = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.959963984540054, as scipy.stats.norm.ppf(0.975)
QUARTILES: tuple[tuple[int, int], ...] = ((1, 4), (2, 4), (3, 4))
"""The quartiles as exact fractions ``k / d`` (SQL finds the ranks with integer arithmetic only)."""
KM_MEDIAN_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Summary:
    """A sample summarised: n, mean with 95 % t-interval, sample SD, quartiles. Unset values are None."""

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    q1: float | None
    median: float | None
    q3: float | None


def t_interval(n: int, mean: float, ssd: float, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided t-interval for a mean from n, the mean and the sum of squared deviations (None if n < 2)."""
    if n < 2:
        return None
    sem = sqrt(max(ssd, 0.0) / (n - 1)) / sqrt(n)
    half = t_quantile(0.5 + confidence / 2, n - 1) * sem
    return mean - half, mean + half


@lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (scipy, imported on first use: it costs ~0.5 s, which commands without figures skip)."""
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(p, df))


def quantile_ranks(n: int, k: int, d: int) -> tuple[int, int, float]:
    """For the quantile p = k/d of n values: 1-based ranks of the two order statistics and the weight.

    ``h = (n - 1) k / d``; returns ``(floor(h) + 1, floor(h) + 2, h - floor(h))``. Integer arithmetic, so the
    SQL rank tests (``d (rn - 1) <= (n - 1) k < d rn``) pick exactly the same rows.
    """
    if n < 1:
        raise ValueError("a quantile needs at least one value")
    position = (n - 1) * k
    low = position // d
    return low + 1, low + 2, (position % d) / d


def interpolate(x_low: float, x_high: float | None, weight: float) -> float:
    """Linear interpolation between two order statistics (x_high is unused when the weight is 0)."""
    if weight == 0 or x_high is None:
        return x_low
    return x_low + weight * (x_high - x_low)


def summarise(
    n: int,
    mean: float | None,
    ssd: float | None,
    quartile_bounds: Sequence[tuple[float | None, float | None]],
    confidence: float = CONFIDENCE,
) -> Summary:
    """Finish a summary from SQL aggregates; ``quartile_bounds`` gives (x_lo, x_hi) for each of QUARTILES."""
    if n == 0 or mean is None:
        return Summary(n=0, mean=None, sd=None, ci_low=None, ci_high=None, q1=None, median=None, q3=None)
    ssd = max(float(ssd or 0.0), 0.0)
    interval = t_interval(n, float(mean), ssd, confidence)
    quartiles: list[float | None] = []
    for (k, d), (x_low, x_high) in zip(QUARTILES, quartile_bounds, strict=True):
        _, _, weight = quantile_ranks(n, k, d)
        quartiles.append(None if x_low is None else interpolate(float(x_low), _float(x_high), weight))
    return Summary(
        n=n,
        mean=float(mean),
        sd=sqrt(ssd / (n - 1)) if n >= 2 else None,
        ci_low=interval[0] if interval else None,
        ci_high=interval[1] if interval else None,
        q1=quartiles[0],
        median=quartiles[1],
        q3=quartiles[2],
    )


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes out of n (None when n == 0); bounds clamp to 0 and 1."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n; got k={k}, n={n}")
    p = k / n
    denom = 2 * (n + z * z)
    centre = (2 * n * p + z * z) / denom
    delta = z / denom * sqrt(4 * n * p * (1 - p) + z * z)
    low = 0.0 if k == 0 else centre - delta
    high = 1.0 if k == n else centre + delta
    return low, high


@dataclass(frozen=True)
class KaplanMeier:
    """The survival curve at every distinct time (event or censoring), and its median."""

    times: tuple[float, ...]
    survival: tuple[float, ...]
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    subjects: int
    total_events: int
    median: float | None


def kaplan_meier(rows: Iterable[tuple[float, int, int]]) -> KaplanMeier:
    """Kaplan-Meier from ``(time, events, censored)`` rows (any order; rows of one time are added up)."""
    per_time: dict[float, list[int]] = {}
    for time, events, censored in rows:
        if events < 0 or censored < 0:
            raise ValueError("event and censoring counts must not be negative")
        slot = per_time.setdefault(float(time), [0, 0])
        slot[0] += int(events)
        slot[1] += int(censored)
    subjects = sum(e + c for e, c in per_time.values())
    at_risk = subjects
    survival = 1.0
    times: list[float] = []
    curve: list[float] = []
    risk: list[int] = []
    deaths: list[int] = []
    median: float | None = None
    for time in sorted(per_time):
        events, censored = per_time[time]
        if events:
            survival *= 1.0 - events / at_risk
            if median is None and survival <= 0.5 + KM_MEDIAN_TOLERANCE:
                median = time
        times.append(time)
        curve.append(survival)
        risk.append(at_risk)
        deaths.append(events)
        at_risk -= events + censored
    return KaplanMeier(
        times=tuple(times),
        survival=tuple(curve),
        at_risk=tuple(risk),
        events=tuple(deaths),
        subjects=subjects,
        total_events=sum(deaths),
        median=median,
    )


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
