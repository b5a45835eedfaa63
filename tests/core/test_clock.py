from datetime import UTC, datetime

import pytest

from needlecare.core import clock


@pytest.mark.parametrize(
    ("utc", "tz", "quiet", "allowed"),
    [
        ("2026-06-01T12:00", "Europe/London", True, "2026-06-01T12:00"),  # 13:00 BST: not quiet
        ("2026-06-01T20:30", "Europe/London", False, "2026-06-02T07:00"),  # 21:30 BST → 08:00 BST next day
        ("2026-06-02T06:00", "Europe/London", False, "2026-06-02T07:00"),  # 07:00 BST → 08:00 same day
        ("2026-01-15T02:00", "America/New_York", False, "2026-01-15T13:00"),  # 21:00 EST the evening before
        ("2026-03-08T06:00", "America/New_York", False, "2026-03-08T12:00"),  # DST starts that night (EDT 08:00)
    ],
)
def test_next_allowed_respects_local_quiet_hours(utc: str, tz: str, quiet: bool, allowed: str) -> None:
    moment = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    expected = datetime.fromisoformat(allowed).replace(tzinfo=UTC)
    assert clock.in_quiet_hours(moment, tz, 21, 8) is not quiet
    assert clock.next_allowed(moment, tz, 21, 8) == expected


def test_quiet_hours_that_do_not_wrap_and_that_are_off() -> None:
    noon = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert clock.in_quiet_hours(noon, "UTC", 12, 14)
    assert clock.next_allowed(noon, "UTC", 12, 14) == datetime(2026, 6, 1, 14, tzinfo=UTC)
    assert not clock.in_quiet_hours(noon, "UTC", 8, 8)


def test_start_of_next_day_is_local() -> None:
    late = datetime(2026, 6, 1, 22, 30, tzinfo=UTC)  # 08:30 on 2 June in Sydney
    assert clock.start_of_next_day(late, "Australia/Sydney", 8) == datetime(2026, 6, 2, 22, tzinfo=UTC)
