"""Deadlines for acknowledging a case: wall-clock minutes for EMERGENCY, working hours otherwise.

Working hours are the clinic's opening hours in its own time zone (``ClinicConfig.opening_hours``).
A SAME_DAY case opened at 17:00 on a Friday with a 4-hour SLA and 08:00-18:00 weekdays is due at
11:00 on Monday: 1 h on Friday, 3 h on Monday.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from needlecare.safety.clinic_config import DAYS, ClinicConfig, OpeningHours

_MAX_DAYS = 366  # a config with at least one open day always finishes well within this


def is_open(moment: datetime, hours: OpeningHours, tz: str) -> bool:
    local = moment.astimezone(ZoneInfo(tz))
    return DAYS[local.weekday()] in hours.days and hours.open <= local.time() < hours.close


def add_working_hours(start: datetime, hours_needed: float, hours: OpeningHours, tz: str) -> datetime:
    """``start`` plus ``hours_needed`` hours counted only while the clinic is open."""
    zone = ZoneInfo(tz)
    local = start.astimezone(zone)
    left = timedelta(hours=hours_needed)
    for _ in range(_MAX_DAYS):
        day = local.date()
        if DAYS[local.weekday()] in hours.days:
            opens = datetime.combine(day, hours.open, tzinfo=zone)
            closes = datetime.combine(day, hours.close, tzinfo=zone)
            begin = max(local, opens)
            if begin < closes:
                if begin + left <= closes:
                    return (begin + left).astimezone(UTC)
                left -= closes - begin
        local = datetime.combine(day + timedelta(days=1), hours.open, tzinfo=zone).replace(hour=0, minute=0)
    raise ValueError("opening hours never open")  # pragma: no cover - OpeningHours needs at least one day


def due_at(tier: str, opened_at: datetime, config: ClinicConfig, tz: str) -> datetime:
    """When a case of ``tier`` opened at ``opened_at`` passes its SLA unacknowledged."""
    sla = config.sla
    if tier == "EMERGENCY":
        return opened_at + timedelta(minutes=sla.emergency_minutes)
    working = sla.same_day_working_hours if tier == "SAME_DAY" else sla.next_bd_working_hours
    return add_working_hours(opened_at, working, config.opening_hours, tz)
