"""Grouped summary statements and their readers, finished by ``needlecare.outcomes.stats``:

- :func:`histogram_stmt`: per group, how many values there are of each distinct value (and sums of flag columns),
  for measures with few distinct values (pain changes are integers -10..10, ROM changes lie on the measure's
  step grid). :func:`read_histograms` finishes exact n, mean, SD and quartiles from those counts: no window
  function ranks every value, no value row is shipped, and the memory in Python is the number of distinct
  values, whatever the cohort size;
- :func:`summary_stmt`: per group n, mean, the sum of squared deviations and the quartile bounds from window
  functions over every value (for continuous values with few rows, e.g. acknowledgement times);
- :func:`moments_stmt`: only n and the sums of ``x`` and ``x²``.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, and_, case, cast, distinct, func, select
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.selectable import CompoundSelect

from needlecare.outcomes import stats


def summary_stmt(values: Select[Any] | CompoundSelect, keys: Sequence[str], sums: Sequence[str] = ()) -> Select[Any]:
    """Per group of ``keys``: n, mean, sum of squared deviations, quartile bounds, sums of ``sums`` columns.

    ``values`` has the key columns, ``x`` and optionally ``patient_id`` and the ``sums`` columns. The window
    ``AVG`` is the first pass, ``SUM((x - mean)^2)`` the second; quartile k/d takes the order statistics at
    ranks ``rn`` with ``d (rn - 1) <= (n - 1) k < d rn`` (low) and the next rank (high).
    """
    v = values.subquery("v")
    group = [v.c[k] for k in keys]
    extra = [v.c[c] for c in sums]
    patient = [v.c.patient_id] if "patient_id" in v.c else []
    ranked = select(
        *group,
        v.c.x,
        *extra,
        *patient,
        func.row_number().over(partition_by=group, order_by=v.c.x).label("rn"),
        func.count().over(partition_by=group).label("cnt"),
        func.avg(v.c.x).over(partition_by=group).label("mean"),
    ).subquery("r")
    r = ranked.c
    deviation = r.x - r.mean
    columns: list[ColumnElement[Any]] = [
        *(r[k] for k in keys),
        func.count().label("n"),
        func.max(r.mean).label("mean"),
        func.sum(deviation * deviation).label("ssd"),
    ]
    for i, (k, d) in enumerate(stats.QUARTILES):
        position = (r.cnt - 1) * k
        low = and_((r.rn - 1) * d <= position, position < r.rn * d)
        high = and_((r.rn - 2) * d <= position, position < (r.rn - 1) * d)
        columns.append(func.max(case((low, r.x))).label(f"q{i}_lo"))
        columns.append(func.max(case((high, r.x))).label(f"q{i}_hi"))
    columns.extend(func.coalesce(func.sum(r[c]), 0).label(c) for c in sums)
    if patient:
        columns.append(func.count(distinct(r.patient_id)).label("patients"))
    return select(*columns).group_by(*(r[k] for k in keys))


def moments_stmt(values: Select[Any] | CompoundSelect, keys: Sequence[str]) -> Select[Any]:
    """Per group of ``keys``: n, the sum of ``x`` and of its squares; one pass, no sort (:func:`read_moments`).

    For figures that need a mean, SD and t-interval but no quartiles (the trajectory): the window functions
    of :func:`summary_stmt` sort every value, which made the trajectory the slowest statement at 100k patients.
    """
    v = values.subquery("v")
    group = [v.c[k] for k in keys]
    x = cast(v.c.x, Float)
    return select(*group, func.count().label("n"), func.sum(x).label("sx"), func.sum(x * x).label("sxx")).group_by(
        *group
    )


def read_moments(row: Any) -> stats.Summary:
    """n, mean, SD and 95 % t-interval from :func:`moments_stmt` (quartiles None). The sum of squared
    deviations is ``sxx - sx^2 / n``: for these measures (|x| <= ~100, n <= ~10^6) its rounding error stays
    many orders of magnitude below the printed precision."""
    n = int(row.n)
    if n == 0:
        return stats.summarise(0, None, None, [(None, None)] * len(stats.QUARTILES))
    mean = float(row.sx) / n
    ssd = max(float(row.sxx) - float(row.sx) * float(row.sx) / n, 0.0)
    return stats.summarise(n, mean, ssd, [(None, None)] * len(stats.QUARTILES))


def read_summary(row: Any) -> stats.Summary:
    bounds = [(getattr(row, f"q{i}_lo"), getattr(row, f"q{i}_hi")) for i in range(len(stats.QUARTILES))]
    return stats.summarise(int(row.n), row.mean, row.ssd, bounds)


def histogram_stmt(values: Select[Any] | CompoundSelect, keys: Sequence[str], sums: Sequence[str] = ()) -> Select[Any]:
    """Per group of ``keys`` and distinct value ``x``: ``count`` (rows with that value) and the sums of ``sums``.

    One grouped pass with no window function: the database returns (groups x distinct values) rows."""
    v = values.subquery("v")
    group = [v.c[k] for k in keys]
    return select(
        *group,
        v.c.x,
        func.count().label("count"),
        *(func.coalesce(func.sum(v.c[c]), 0).label(c) for c in sums),
    ).group_by(*group, v.c.x)


@dataclass(frozen=True)
class Histogram:
    """One group read from :func:`histogram_stmt`: its key, the summary of its values and the sums of its flags."""

    key: tuple[Any, ...]
    summary: stats.Summary
    sums: dict[str, int]


def summary_of_counts(counts: Sequence[tuple[float, int]]) -> stats.Summary:
    """Exact n, mean, SD, t-interval and quartiles of a sample given as (value, count) pairs.

    The mean is ``fsum(value * count) / n`` and the sum of squared deviations ``fsum(count * (value - mean)^2)``
    (two passes over the distinct values); quartile k/d takes the order statistics at the ranks of
    :func:`stats.quantile_ranks`, found by walking the cumulative counts in value order."""
    ordered = sorted((float(x), int(c)) for x, c in counts if int(c) > 0)
    n = sum(c for _, c in ordered)
    if n == 0:
        return stats.summarise(0, None, None, [(None, None)] * len(stats.QUARTILES))
    mean = math.fsum(x * c for x, c in ordered) / n
    ssd = math.fsum(c * (x - mean) * (x - mean) for x, c in ordered)
    bounds: list[tuple[float | None, float | None]] = []
    for k, d in stats.QUARTILES:
        low_rank, high_rank, _ = stats.quantile_ranks(n, k, d)
        bounds.append((_at_rank(ordered, low_rank), _at_rank(ordered, high_rank) if high_rank <= n else None))
    return stats.summarise(n, mean, ssd, bounds)


def _at_rank(ordered: Sequence[tuple[float, int]], rank: int) -> float:
    """The order statistic at 1-based ``rank`` of a sample given as (value, count) pairs in value order."""
    seen = 0
    for x, c in ordered:
        seen += c
        if seen >= rank:
            return x
    raise ValueError(f"rank {rank} is past the sample's {seen} values")


def read_histograms(rows: Iterable[Any], keys: Sequence[str], sums: Sequence[str] = ()) -> list[Histogram]:
    """The groups of :func:`histogram_stmt`'s rows, in the order their keys first appear."""
    counts: dict[tuple[Any, ...], list[tuple[float, int]]] = defaultdict(list)
    totals: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in rows:
        key = tuple(getattr(row, k) for k in keys)
        counts[key].append((row.x, int(row.count)))
        found = totals.setdefault(key, dict.fromkeys(sums, 0))
        for name in sums:
            found[name] += int(getattr(row, name) or 0)
    return [Histogram(key=key, summary=summary_of_counts(values), sums=totals[key]) for key, values in counts.items()]
