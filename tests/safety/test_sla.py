"""SLA deadlines in working hours, and the clinic config that sets them (checked when loaded)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from needlecare.safety import sla
from needlecare.safety.clinic_config import (
    ClinicConfig,
    ClinicConfigError,
    OpeningHours,
    load_config_file,
    parse_config,
)

NY = "America/New_York"
WEEKDAYS = OpeningHours()


def ny(text: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(NY)).astimezone(UTC)


@pytest.mark.parametrize(
    ("opened", "hours", "due"),
    [
        ("2026-11-23 09:00", 4, "2026-11-23 13:00"),  # Monday morning
        ("2026-11-23 16:00", 4, "2026-11-24 10:00"),  # 2 h today, 2 h tomorrow
        ("2026-11-27 17:00", 4, "2026-11-30 11:00"),  # Friday 17:00: 1 h, then Monday 3 h
        ("2026-11-28 12:00", 4, "2026-11-30 12:00"),  # Saturday: starts Monday 08:00
        ("2026-11-23 06:30", 4, "2026-11-23 12:00"),  # before opening
        ("2026-11-23 18:00", 10, "2026-11-24 18:00"),  # at closing: one whole day
        ("2027-03-12 16:00", 4, "2027-03-15 10:00"),  # across the spring DST change, still local hours
    ],
)
def test_working_hours(opened: str, hours: float, due: str) -> None:
    assert sla.add_working_hours(ny(opened), hours, WEEKDAYS, NY) == ny(due)


def test_due_at_per_tier() -> None:
    config = ClinicConfig()
    opened = ny("2026-11-27 17:00")
    assert (sla.due_at("EMERGENCY", opened, config, NY) - opened).total_seconds() == 30 * 60
    assert sla.due_at("SAME_DAY", opened, config, NY) == ny("2026-11-30 11:00")
    assert sla.due_at("NEXT_BD", opened, config, NY) == ny("2026-11-30 17:00")  # 1 h Friday, 9 h Monday


def test_is_open() -> None:
    assert sla.is_open(ny("2026-11-23 08:00"), WEEKDAYS, NY)
    assert not sla.is_open(ny("2026-11-23 18:00"), WEEKDAYS, NY)
    assert not sla.is_open(ny("2026-11-28 12:00"), WEEKDAYS, NY)


def test_a_config_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "clinic.toml"
    path.write_text(
        '[[alerts]]\nurl = "json://localhost:9000/hook"\ntags = ["emergency", "same_day", "next_bd", "backup"]\n'
        '[sla]\nsame_day_working_hours = 3\n[opening_hours]\ndays = ["mon", "sat"]\nopen = "09:30"\nclose = "13:00"\n'
    )
    config = load_config_file(path)
    assert config.sla.same_day_working_hours == 3 and config.opening_hours.days == ["mon", "sat"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"alerts": [{"url": "nonsense", "tags": ["emergency"]}]}, "alerts.0.url: Apprise cannot read this URL"),
        ({"alerts": [{"url": "json://h/x", "tags": ["urgent"]}]}, "unknown tag(s) urgent; allowed: emergency"),
        ({"alerts": [{"url": "json://h/x", "tags": ["emergency"]}]}, "no alert route for same_day, next_bd"),
        ({"sla": {"same_day_working_hours": 0}}, "sla.same_day_working_hours: Input should be greater than 0"),
        ({"opening_hours": {"open": "18:00", "close": "08:00"}}, "close (08:00) must be later than open (18:00)"),
        ({"opening_hours": {"days": ["monday"]}}, "opening_hours.days.0"),
        ({"sla": {"typo": 1}}, "sla.typo: Extra inputs are not permitted"),
    ],
)
def test_a_broken_config_is_refused_with_the_field(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ClinicConfigError) as info:
        parse_config(data, source="clinic.toml")
    assert fragment in str(info.value) and str(info.value).startswith("clinic.toml: ")


def test_a_missing_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ClinicConfigError, match="file not found"):
        load_config_file(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sla\n")
    with pytest.raises(ClinicConfigError, match="not valid TOML"):
        load_config_file(bad)
