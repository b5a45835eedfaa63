"""The dashboard's query filters: read and check ``injury``, ``practitioner``, ``period`` (with ``since``/``until``),
``step``, ``page`` and ``days`` into a :class:`View`, or raise :class:`InvalidFilters` listing every value that is
not allowed and what is.

A preset period starts at local midnight ``N`` days back; a custom period runs from ``since`` 00:00 to the end of
``until``, both in the clinic's time zone. The period selects episodes by their start, like every outcome figure.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from models import Practitioner
from needlecare.core.catalogue import get_catalogue
from needlecare.followup.protocols import get_protocols
from needlecare.outcomes.definitions import STEP_ORDER
from needlecare.outcomes.nonresponders import DEFAULT_EXPIRED_DAYS
from needlecare.outcomes.periods import PERIODS, local_midnight, preset_since

CUSTOM = "custom"
DEFAULT_PERIOD = "all"
DEFAULT_STEP = "outcome_6wk"
"""The overview's time point when none is asked for and the figures do not choose one
(``needlecare.web.dashboard.views.default_step``)."""
MAX_PAGE = 10_000
MAX_EXPIRED_DAYS = 365


@dataclass(frozen=True)
class Problem:
    """One query parameter that is not allowed, and what is."""

    name: str
    value: str
    message: str
    allowed: tuple[tuple[str, str], ...] = ()  # (value, label)


class InvalidFilters(Exception):
    """Raised by :func:`read_filters`; the route answers 422 with every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.name}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class View:
    """The filters of a dashboard page, checked, with the period as UTC datetimes for the queries."""

    injury: str | None = None
    practitioner_id: int | None = None
    period: str = DEFAULT_PERIOD
    since_date: date | None = None  # custom period only (inclusive, clinic's local dates)
    until_date: date | None = None
    since: datetime | None = None  # episodes started at or after
    until: datetime | None = None  # ... and before
    step: str | None = None  # None: the overview chooses the time point with data (views.default_step)
    page: int = 1
    days: int = DEFAULT_EXPIRED_DAYS

    def params(self, **changes: Any) -> dict[str, str]:
        """The query parameters that reproduce this view (defaults left out), with ``changes`` applied."""
        values: dict[str, Any] = {
            "injury": self.injury,
            "practitioner": self.practitioner_id,
            "period": self.period if self.period != DEFAULT_PERIOD else None,
            "since": self.since_date.isoformat() if self.period == CUSTOM and self.since_date else None,
            "until": self.until_date.isoformat() if self.period == CUSTOM and self.until_date else None,
            "step": self.step,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None and v != ""}

    def query(self, **changes: Any) -> str:
        """``?a=b&…`` for a link (empty string when every filter is at its default)."""
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""


def step_ids() -> list[str]:
    """Time points the overview can show: every protocol step, in the protocol order."""
    found = {s.id for protocol in get_protocols().values() for s in protocol.steps}
    return sorted(found, key=lambda s: (STEP_ORDER.index(s) if s in STEP_ORDER else len(STEP_ORDER), s))


def step_title(step_id: str) -> str:
    """The protocol's title of a step (its id, spaced out, for a step no protocol has)."""
    for protocol in get_protocols().values():
        for step in protocol.steps:
            if step.id == step_id:
                return step.title
    return step_id.replace("_", " ")


def _int(raw: str, name: str, low: int, high: int, problems: list[Problem], message: str) -> int | None:
    if raw.isdigit() and low <= int(raw) <= high:
        return int(raw)
    problems.append(Problem(name, raw, message))
    return None


def _date(raw: str, name: str, problems: list[Problem]) -> date | None:
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(Problem(name, raw, "must be a date written YYYY-MM-DD, e.g. 2026-01-31"))
        return None


def read_filters(params: Mapping[str, str], *, practitioners: list[Practitioner], tz: str, now: datetime) -> View:
    """Check the query parameters; raises :class:`InvalidFilters` listing every bad one and its allowed values.

    Empty values mean "not set" (what the form sends for "All"). A preset period starts at local midnight
    ``N`` days back (so the figures stay the same all day); a custom period runs from ``since`` 00:00 to the
    end of ``until``, both in the clinic's time zone.
    """
    problems: list[Problem] = []

    def get(name: str) -> str:
        return (params.get(name) or "").strip()

    injuries = get_catalogue().injuries
    injury: str | None = get("injury") or None
    if injury is not None and injury not in injuries:
        problems.append(
            Problem(
                "injury",
                injury,
                "is not an injury of the catalogue",
                tuple((slug, i.name) for slug, i in injuries.items()),
            )
        )
        injury = None

    practitioner_id: int | None = None
    raw = get("practitioner")
    if raw:
        known = {p.id: p.name for p in practitioners if p.id is not None}
        if raw.isdigit() and int(raw) in known:
            practitioner_id = int(raw)
        else:
            problems.append(
                Problem(
                    "practitioner",
                    raw,
                    "is not the id of one of this clinic's practitioners",
                    tuple((str(i), name) for i, name in known.items()),
                )
            )

    since_date = _date(get("since"), "since", problems) if get("since") else None
    until_date = _date(get("until"), "until", problems) if get("until") else None
    period = get("period") or (CUSTOM if since_date or until_date else DEFAULT_PERIOD)
    allowed_periods = (*((k, label) for k, (label, _) in PERIODS.items()), (CUSTOM, "Custom dates (since/until)"))
    since = until = None
    if period == CUSTOM:
        if since_date and until_date and since_date > until_date:
            problems.append(Problem("until", get("until"), f"must not be before since ({since_date.isoformat()})"))
        since = local_midnight(since_date, tz) if since_date else None
        until = local_midnight(until_date + timedelta(days=1), tz) if until_date else None
    elif period in PERIODS:
        since_date = until_date = None
        since = preset_since(period, tz, now)
    else:
        problems.append(Problem("period", period, "is not a period the dashboard offers", allowed_periods))

    steps = step_ids()
    step = get("step") or None
    if step is not None and step not in steps:
        problems.append(
            Problem("step", step, "is not a follow-up time point", tuple((s, step_title(s)) for s in steps))
        )
    page = _int(get("page") or "1", "page", 1, MAX_PAGE, problems, f"must be a whole number from 1 to {MAX_PAGE}")
    days = _int(
        get("days") or str(DEFAULT_EXPIRED_DAYS),
        "days",
        0,
        MAX_EXPIRED_DAYS,
        problems,
        f"must be a whole number of days from 0 to {MAX_EXPIRED_DAYS}",
    )
    if problems:
        raise InvalidFilters(problems)
    return View(
        injury=injury,
        practitioner_id=practitioner_id,
        period=period,
        since_date=since_date,
        until_date=until_date,
        since=since,
        until=until,
        step=step,
        page=page or 1,
        days=DEFAULT_EXPIRED_DAYS if days is None else days,
    )
