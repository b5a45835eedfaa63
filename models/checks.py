"""Field checks shared by the schemas: one wording of each rule, everywhere it applies."""

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.match(value):
        raise ValueError("must be an email address such as name@example.org")
    return value


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name, e.g. America/New_York or Europe/London") from None
    return value
