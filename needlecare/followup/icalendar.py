"""A small iCalendar (RFC 5545) file listing a patient's follow-up check dates."""

from dataclasses import dataclass
from datetime import UTC, datetime

_FMT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class CheckDate:
    uid: str
    title: str
    starts_at: datetime


def follow_up_calendar(checks: list[CheckDate], *, clinic_name: str, now: datetime) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//needlecare//follow-up//EN", "CALSCALE:GREGORIAN"]
    for check in checks:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{check.uid}@needlecare",
            f"DTSTAMP:{now.astimezone(UTC).strftime(_FMT)}",
            f"DTSTART:{check.starts_at.astimezone(UTC).strftime(_FMT)}",
            "DURATION:PT15M",
            f"SUMMARY:{_escape(check.title)} ({_escape(clinic_name)})",
            "DESCRIPTION:We will email you a short check-in link around this time.",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
