"""Grouped summary statements and their readers: per group n, mean, the sum of squared deviations and the
quartile bounds (or only n and the sums of ``x`` and ``x²``), finished by ``needlecare.outcomes.stats``.
"""

from collections.abc import Sequence
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
