"""Field checks shared by the schemas: one wording of each rule, everywhere it applies."""

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.match(value):
        raise ValueError("must be an email address such as name@example.org")
    return value


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(value: str) -> str:
    """An IANA zone name (``America/New_York``), checked against the zone list rather than by opening a file, so
    an area (``Europe``), a path or a stray character is refused like any other unknown name."""
    if value not in _zone_names():
        raise ValueError("must be an IANA time zone name, e.g. America/New_York or Europe/London")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone name, e.g. America/New_York or Europe/London") from None
    return value
