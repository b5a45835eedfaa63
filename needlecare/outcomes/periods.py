"""The dashboard's preset periods, as UTC datetimes: shared by the web page and the flow that precomputes figures.

A preset period selects episodes started from local midnight ``N`` days back (in the clinic's time zone) with
no end, so the boundary and therefore the figures stay the same all day; the page and
``needlecare.outcomes.store.standard_views`` compute it with :func:`preset_since` and so ask for the same
snapshot key.
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from needlecare.core import clock

PERIODS: dict[str, tuple[str, int | None]] = {
    "all": ("All time", None),
    "12m": ("Last 12 months", 365),
    "90d": ("Last 90 days", 90),
    "30d": ("Last 30 days", 30),
}
"""Preset period id → (label, days back; None = all time)."""


def local_midnight(day: date, tz: str) -> datetime:
    """00:00 of ``day`` in the time zone ``tz``, as a UTC datetime."""
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(UTC)


def preset_since(period: str, tz: str, now: datetime) -> datetime | None:
    """The start of a preset period: local midnight ``N`` days before ``now``'s local date (None for all time).

    Raises ``KeyError`` for a period that is not a preset and ``ValueError`` for a naive ``now``.
    """
    days = PERIODS[period][1]
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if days is None:
        return None
    return local_midnight(clock.local_date(now, tz) - timedelta(days=days), tz)
