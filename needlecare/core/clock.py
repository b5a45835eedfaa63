"""Local-time rules for patient messages: quiet hours and calendar days in the patient's zone.

Every time-based decision takes "now" from its caller (one clock per pass), never from the system.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local(moment: datetime, tz: str) -> datetime:
    return moment.astimezone(ZoneInfo(tz))


def local_date(moment: datetime, tz: str) -> date:
    return local(moment, tz).date()


def in_quiet_hours(moment: datetime, tz: str, start: int, end: int) -> bool:
    """True when the local hour is in [start, end) (wrapping midnight when start > end)."""
    hour = local(moment, tz).hour
    if start == end:
        return False
    if start > end:
        return hour >= start or hour < end
    return start <= hour < end


def next_allowed(moment: datetime, tz: str, start: int, end: int) -> datetime:
    """``moment`` itself if outside quiet hours, else the end of these quiet hours (local ``end``:00)."""
    if not in_quiet_hours(moment, tz, start, end):
        return moment
    here = local(moment, tz)
    day = here.date() if here.hour < end else here.date() + timedelta(days=1)
    return datetime.combine(day, time(end), tzinfo=ZoneInfo(tz)).astimezone(moment.tzinfo)


def start_of_next_day(moment: datetime, tz: str, hour: int) -> datetime:
    """``hour``:00 local on the day after ``moment``'s local date."""
    day = local_date(moment, tz) + timedelta(days=1)
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(tz)).astimezone(moment.tzinfo)
