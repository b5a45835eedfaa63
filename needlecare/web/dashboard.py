"""The practitioner dashboard (issue 5): outcome overview per injury, one injury's trajectory, non-responders,
and the same figures as CSV or PDF. Behind the login; every figure is the clinic's own.

Routes (all GET, filters as query parameters, a plain form, no script):

- ``/dashboard``: per injury, patients followed up, sessions, the response rate, pain change, pain responders and
  ROM change at one time point (``step``), and adverse events per 100 checked sessions; open escalation cases
  per tier (link to /cases); the newest non-responders (link to the full list).
- ``/dashboard/injury/{slug}``: the trajectory chart (inline SVG) and the per-time-point table of one injury,
  plus its adverse events, escalations and time to recovery.
- ``/dashboard/nonresponders``: sent follow-ups without an answer, newest first, 50 a page.
- ``/dashboard/export.csv`` and ``/dashboard/export.pdf``: ``needlecare.reports`` for the same filters, as an
  attachment named ``needlecare-<clinic>-outcomes[-<injury>]-<YYYY-MM-DD>.<ext>``.

Filters: ``injury`` (a catalogue slug), ``practitioner`` (the id of one of the clinic's practitioners),
``period`` (``all``, ``12m``, ``90d``, ``30d`` or ``custom``) with ``since``/``until`` dates (YYYY-MM-DD, both
inclusive, in the clinic's time zone) and ``step`` (the overview's time point). A value that is not allowed gets
a 422 page listing the allowed values. The period selects episodes by their start, like every outcome figure.

Figures come from :func:`needlecare.reports.build_report` (suppressed per the report policy) and are kept per
process (:class:`ReportCache`), keyed by database, clinic and filters: computing them reads every answer of the
clinic (seconds at 10k patients, tens of seconds at 100k), showing them again takes milliseconds. An entry is
fresh for :data:`CACHE_SECONDS`; a page asked for later is served from it (up to :data:`STALE_SECONDS`) while a
background thread recomputes it. Downloads always use fresh figures. Each page says when its figures were
computed. Non-responders and escalation counts are always read live.
"""

import logging
import threading
import time as timer
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlmodel import Session, col, select

from models import Clinic, Practitioner, StaffUser
from models.base import utcnow
from needlecare import casebook, clock, reports
from needlecare.catalogue import get_catalogue
from needlecare.db import get_engine
from needlecare.nonresponders import DEFAULT_EXPIRED_DAYS, list_nonresponders
from needlecare.outcomes import ADVERSE_KINDS, STEP_ORDER, AdverseRow, RecoveryRow, StepRow, TrajectoryPoint
from needlecare.protocols import get_protocols
from needlecare.reports import ReportData
from needlecare.suppression import Figure, Reason
from needlecare.web.auth import CurrentUser
from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.templating import templates

log = logging.getLogger("needlecare.web.dashboard")
router = APIRouter(tags=["dashboard"], include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "same-origin"}
PERIODS: dict[str, tuple[str, int | None]] = {
    "all": ("All time", None),
    "12m": ("Last 12 months", 365),
    "90d": ("Last 90 days", 90),
    "30d": ("Last 30 days", 30),
}
CUSTOM = "custom"
DEFAULT_PERIOD = "all"
DEFAULT_STEP = "outcome_6wk"
PAGE_SIZE = 50
PREVIEW_SIZE = 10
MAX_PAGE = 10_000
MAX_EXPIRED_DAYS = 365
CACHE_SECONDS = 300.0
STALE_SECONDS = 3600.0
CACHE_ENTRIES = 32
OVERVIEW_ADVERSE = ("soreness_past_72h", "bruise_any", "red_flag")
ESCALATION_TIERS = ("EMERGENCY", "SAME_DAY", "NEXT_BD")


# ---------------------------------------------------------------------------------------------- filters


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
    step: str = DEFAULT_STEP
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
            "step": self.step if self.step != DEFAULT_STEP else None,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None and v != ""}

    def query(self, **changes: Any) -> str:
        """``?a=b&…`` for a link (empty string when every filter is at its default)."""
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""


def _steps() -> list[str]:
    """Time points the overview can show: every protocol step, in the protocol order."""
    found = {s.id for protocol in get_protocols().values() for s in protocol.steps}
    return sorted(found, key=lambda s: (STEP_ORDER.index(s) if s in STEP_ORDER else len(STEP_ORDER), s))


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


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(UTC)


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
        since = _local_midnight(since_date, tz) if since_date else None
        until = _local_midnight(until_date + timedelta(days=1), tz) if until_date else None
    elif period in PERIODS:
        since_date = until_date = None
        days = PERIODS[period][1]
        if days is not None:
            since = _local_midnight(clock.local_date(now, tz) - timedelta(days=days), tz)
    else:
        problems.append(Problem("period", period, "is not a period the dashboard offers", allowed_periods))

    steps = _steps()
    step = get("step") or DEFAULT_STEP
    if step not in steps:
        problems.append(
            Problem("step", step, "is not a follow-up time point", tuple((s, _step_title(s)) for s in steps))
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


# ------------------------------------------------------------------------------------------------ cache


@dataclass
class _Entry:
    data: ReportData
    stored: float
    charts: dict[str, str] = field(default_factory=dict)


Compute = Callable[[], ReportData]


class ReportCache:
    """Computed reports of one app, per (database, clinic, filters); least recently used out.

    An entry is fresh for ``seconds``. After that, pages are still served from it for up to ``stale_seconds``
    while one background thread computes its replacement (stale-while-revalidate), so only the first view of a
    filter set waits for the statistics; downloads (``fresh_only``) always wait for fresh figures.
    """

    def __init__(
        self, seconds: float = CACHE_SECONDS, stale_seconds: float = STALE_SECONDS, entries: int = CACHE_ENTRIES
    ) -> None:
        self.seconds = seconds
        self.stale_seconds = stale_seconds
        self.entries = entries
        self._items: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._refreshing: dict[tuple[Any, ...], threading.Thread] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], *, fresh_only: bool = False) -> tuple[_Entry | None, bool]:
        """(entry, stale): the entry if it may be shown, and whether it is past ``seconds``."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None, False
            age = timer.monotonic() - entry.stored
            if age > self.stale_seconds:
                del self._items[key]
                return None, False
            if fresh_only and age > self.seconds:
                return None, False
            self._items.move_to_end(key)
            return entry, age > self.seconds

    def put(self, key: tuple[Any, ...], data: ReportData) -> _Entry:
        entry = _Entry(data=data, stored=timer.monotonic())
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return entry

    def refresh(self, key: tuple[Any, ...], compute: Compute) -> None:
        """Recompute ``key`` in a background thread, unless that is already under way."""

        def run() -> None:
            try:
                self.put(key, compute())
            except Exception as exc:  # the stale entry stays; the next view tries again
                log.error("dashboard refresh failed: %s", type(exc).__name__)
            finally:
                with self._lock:
                    self._refreshing.pop(key, None)

        with self._lock:
            if key in self._refreshing:
                return
            thread = threading.Thread(target=run, name="dashboard-refresh", daemon=True)
            self._refreshing[key] = thread
        thread.start()

    def wait(self, timeout: float = 60.0) -> None:
        """Until no refresh is under way (tests and benchmarks)."""
        deadline = timer.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._refreshing.values())
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - timer.monotonic()))
            if timer.monotonic() >= deadline:
                raise TimeoutError("dashboard refresh still running")

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def report_cache(app: FastAPI) -> ReportCache:
    """The app's report cache (created on first use); benchmarks clear it to time a cold page."""
    cache = getattr(app.state, "dashboard_cache", None)
    if not isinstance(cache, ReportCache):
        cache = ReportCache()
        app.state.dashboard_cache = cache
    return cache


def _key(database: str, clinic_id: str, view: View, injury: str | None) -> tuple[Any, ...]:
    return (database, clinic_id, injury, view.practitioner_id, view.since, view.until)


def _compute(database: str, clinic_id: str, view: View, injury: str | None, db: Session | None = None) -> Compute:
    def compute() -> ReportData:
        def build(session: Session) -> ReportData:
            return reports.build_report(
                session,
                clinic_id,
                injury=injury,
                practitioner_id=view.practitioner_id,
                since=view.since,
                until=view.until,
                now=utcnow(),
            )

        if db is not None:
            return build(db)
        with Session(get_engine(database), expire_on_commit=False) as own:  # a background thread's own session
            return build(own)

    return compute


def _report(request: Request, db: Session, database: str, clinic_id: str, view: View, *, exact: bool) -> _Entry:
    """The report for these filters, from the cache when it may be shown (a stale one is refreshed behind).

    Pages (``exact=False``) may read one injury out of the all-injuries report (an injury's figures do not
    depend on the others). Downloads (``exact=True``) need a fresh report of exactly these filters, since the
    file holds whatever the report holds.
    """
    cache = report_cache(request.app)
    candidates = [view.injury] if exact or view.injury is None else [view.injury, None]
    for injury in candidates:
        key = _key(database, clinic_id, view, injury)
        entry, stale = cache.get(key, fresh_only=exact)
        if entry is not None:
            if stale:
                cache.refresh(key, _compute(database, clinic_id, view, injury))
            return entry
    key = _key(database, clinic_id, view, view.injury)
    return cache.put(key, _compute(database, clinic_id, view, view.injury, db)())


def _trajectory_chart(entry: _Entry, injury: str) -> Markup | None:
    """The injury's trajectory chart (SVG), drawn once per cached report; None when no mean can be shown."""
    if not any(p.injury == injury and p.mean.shown for p in entry.data.trajectory):
        return None
    svg = entry.charts.get(injury)
    if svg is None:
        from needlecare.charts import trajectory_svg  # imports matplotlib: only when a chart is drawn

        svg = trajectory_svg(guarded_trajectory(entry.data), injury, injury_name=_injury_name(injury))
        entry.charts[injury] = svg
    return Markup(svg)


# ------------------------------------------------------------------------------------------- view models


def _injury_name(slug: str) -> str:
    return reports.injury_name(slug)


def _step_title(step_id: str) -> str:
    for protocol in get_protocols().values():
        for step in protocol.steps:
            if step.id == step_id:
                return step.title
    return step_id.replace("_", " ")


@dataclass(frozen=True)
class OverviewRow:
    """One injury on the overview: its follow-up, sessions, the chosen time point and adverse events."""

    injury: str
    name: str
    recovery: RecoveryRow | None
    adverse: AdverseRow | None
    step: StepRow | None
    events: tuple[tuple[str, Figure], ...]  # (label, per 100 checked sessions)


def overview_rows(data: ReportData, step_id: str, injury: str | None) -> list[OverviewRow]:
    """The overview table: one row per injury with figures (only ``injury`` when the filter names one)."""
    o = data.outcomes
    slugs = [s for s in data.injuries if injury is None or s == injury]
    rows = []
    for slug in slugs:
        adverse = next((a for a in o.adverse if a.injury == slug), None)
        events: tuple[tuple[str, Figure], ...] = ()
        if adverse is not None:
            events = tuple(
                (reports.ADVERSE_LABELS.get(kind, kind), adverse.events[kind].per_100_sessions)
                for kind in OVERVIEW_ADVERSE
                if kind in adverse.events
            )
        rows.append(
            OverviewRow(
                injury=slug,
                name=_injury_name(slug),
                recovery=next((r for r in o.recovery if r.injury == slug), None),
                adverse=adverse,
                step=next((r for r in o.rows if r.injury == slug and r.step_id == step_id), None),
                events=events,
            )
        )
    return rows


def _sealed(figure: Figure) -> Figure:
    """The figure with its n hidden too ("suppressed"), for an n that would give back a hidden count."""
    update: dict[str, Any] = {"n_shown": None, "n_display": "suppressed"}
    if figure.shown:
        update.update(value=None, display="suppressed", low=None, high=None, suppressed_reason=Reason.COMPLEMENTARY)
    return figure.model_copy(update=update)


def guarded_trajectory(data: ReportData) -> tuple[TrajectoryPoint, ...]:
    """The trajectory points, with the n of every point hidden where its step's answered count is hidden.

    A point's n counts answers at that step, so it can equal the answered count that complementary
    suppression hid (e.g. 25 answered beside 5 not answered); the mean itself may still be shown.
    """
    hidden = {
        (r.injury, r.step_id)
        for r in data.outcomes.rows
        if not (r.contacts_answered.shown and r.patients_answered.shown)
    }
    return tuple(
        replace(p, n=_sealed(p.n), mean=p.mean.model_copy(update={"n_shown": None, "n_display": "suppressed"}))
        if (p.injury, p.step_id) in hidden
        else p
        for p in data.trajectory
    )


@dataclass(frozen=True)
class TimePoint:
    """One row of the injury page's table: follow-up, mean values and paired changes at one step."""

    step_id: str
    title: str
    row: StepRow | None  # None for the baseline
    pain: TrajectoryPoint | None
    rom: tuple[TrajectoryPoint, ...]


def time_points(data: ReportData, injury: str) -> list[TimePoint]:
    """Baseline first, then every step with any figure, in protocol order."""
    points = [p for p in guarded_trajectory(data) if p.injury == injury]
    rows = {r.step_id: r for r in data.outcomes.rows if r.injury == injury}
    steps = ["baseline", *(s for s in STEP_ORDER[1:] if s in rows or any(p.step_id == s for p in points))]
    steps += sorted({*rows, *(p.step_id for p in points)} - set(steps))
    result = []
    for step in steps:
        here = [p for p in points if p.step_id == step]
        pain = next((p for p in here if p.measure == reports.PAIN), None)
        if step == "baseline" and not here:
            continue
        result.append(
            TimePoint(
                step_id=step,
                title="Baseline (first session)" if step == "baseline" else _step_title(step),
                row=rows.get(step),
                pain=pain,
                rom=tuple(p for p in here if p.measure != reports.PAIN),
            )
        )
    return result


def interval(figure: Figure | None, decimals: int = 1) -> str:
    """'95 % CI a to b' for a shown figure with an interval, else ''."""
    if figure is None or not figure.shown or figure.low is None or figure.high is None:
        return ""
    return f"95 % CI {figure.low:.{decimals}f} to {figure.high:.{decimals}f}"


def _practitioners(db: Session, clinic_id: str) -> list[Practitioner]:
    return list(
        db.exec(select(Practitioner).where(Practitioner.clinic_id == clinic_id).order_by(col(Practitioner.name))).all()
    )


@dataclass
class Page:
    """What every dashboard page needs: the user, the clinic, the checked filters and the form's options."""

    request: Request
    user: StaffUser
    clinic: Clinic
    practitioners: list[Practitioner]
    view: View
    now: datetime

    def context(self, **extra: Any) -> dict[str, Any]:
        tz = self.clinic.timezone
        names = {p.id: p.name for p in self.practitioners}
        return {
            "request": self.request,
            "user": self.user,
            "clinic": self.clinic,
            "view": self.view,
            "tz": tz,
            "practitioners": self.practitioners,
            "practitioner_name": names.get(self.view.practitioner_id) if self.view.practitioner_id else None,
            "injuries": [(slug, i.name) for slug, i in get_catalogue().injuries.items()],
            "injury_name": _injury_name,
            "periods": [(k, label) for k, (label, _) in PERIODS.items()],
            "period_label": PERIODS[self.view.period][0] if self.view.period in PERIODS else "Custom dates",
            "steps": [(s, _step_title(s)) for s in _steps()],
            "step_title": _step_title,
            "interval": interval,
            "local": lambda moment: clock.local(moment, tz).strftime("%a %d %b %Y %H:%M"),
            "local_date": lambda moment: clock.local(moment, tz).strftime("%d %b %Y"),
            **extra,
        }


def _page(request: Request, db: Session, user: StaffUser) -> Page | Response:
    """The page's checked filters, or the 422 page listing what is wrong with them."""
    clinic = db.get(Clinic, user.clinic_id)
    if clinic is None:  # pragma: no cover - a staff user always belongs to a clinic (foreign key)
        raise RuntimeError("staff user without a clinic")
    practitioners = _practitioners(db, clinic.id)
    now = utcnow()
    try:
        view = read_filters(request.query_params, practitioners=practitioners, tz=clinic.timezone, now=now)
    except InvalidFilters as exc:
        return _invalid(request, user, exc.problems)
    return Page(request=request, user=user, clinic=clinic, practitioners=practitioners, view=view, now=now)


def _invalid(request: Request, user: StaffUser, problems: list[Problem], *, status: int = 422) -> Response:
    context = {"request": request, "user": user, "problems": problems}
    return templates.TemplateResponse(
        request, "dashboard_invalid.html.j2", context, status_code=status, headers=NO_STORE
    )


# ------------------------------------------------------------------------------------------------ routes


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, user: CurrentUser, db: DbDep, settings: SettingsDep) -> Response:
    """The overview per injury, open escalations and the newest non-responders."""
    page = _page(request, db, user)
    if isinstance(page, Response):
        return page
    view = page.view
    entry = _report(request, db, settings.resolved_database_url, page.clinic.id, view, exact=False)
    chasing = list_nonresponders(
        db,
        page.clinic.id,
        now=page.now,
        injury=view.injury,
        practitioner_id=view.practitioner_id,
        since=view.since,
        until=view.until,
        limit=PREVIEW_SIZE,
        expired_days=view.days,
    )
    context = page.context(
        data=entry.data,
        rows=overview_rows(entry.data, view.step, view.injury),
        counts=casebook.counts_by_tier(db, page.clinic.id),
        escalation_tiers=ESCALATION_TIERS,
        chasing=chasing,
        cache_seconds=int(report_cache(request.app).seconds),
    )
    return templates.TemplateResponse(request, "dashboard.html.j2", context, headers=NO_STORE)


@router.get("/dashboard/injury/{slug}", response_class=HTMLResponse)
def injury_page(slug: str, request: Request, user: CurrentUser, db: DbDep, settings: SettingsDep) -> Response:
    """One injury: the trajectory chart, the per-time-point table, adverse events, escalations, recovery."""
    injuries = get_catalogue().injuries
    if slug not in injuries:
        allowed = tuple((s, i.name) for s, i in injuries.items())
        problem = Problem("injury", slug, "is not an injury of the catalogue", allowed)
        return _invalid(request, user, [problem], status=404)
    page = _page(request, db, user)
    if isinstance(page, Response):
        return page
    view = replace(page.view, injury=slug)
    entry = _report(request, db, settings.resolved_database_url, page.clinic.id, view, exact=False)
    data = entry.data
    context = page.context(
        slug=slug,
        name=_injury_name(slug),
        data=data,
        chart=_trajectory_chart(entry, slug),
        points=time_points(data, slug),
        adverse=next((a for a in data.outcomes.adverse if a.injury == slug), None),
        adverse_kinds=[(k, reports.ADVERSE_LABELS.get(k, k)) for k in ADVERSE_KINDS],
        escalations=[e for e in data.outcomes.escalations if e.injury == slug],
        recovery=next((r for r in data.outcomes.recovery if r.injury == slug), None),
        cache_seconds=int(report_cache(request.app).seconds),
    )
    context["view"] = view
    return templates.TemplateResponse(request, "dashboard_injury.html.j2", context, headers=NO_STORE)


@router.get("/dashboard/nonresponders", response_class=HTMLResponse)
def nonresponders_page(request: Request, user: CurrentUser, db: DbDep) -> Response:
    """Sent follow-ups without an answer, newest first, a page at a time."""
    page = _page(request, db, user)
    if isinstance(page, Response):
        return page
    view = page.view
    result = list_nonresponders(
        db,
        page.clinic.id,
        now=page.now,
        injury=view.injury,
        practitioner_id=view.practitioner_id,
        since=view.since,
        until=view.until,
        limit=PAGE_SIZE,
        offset=(view.page - 1) * PAGE_SIZE,
        expired_days=view.days,
    )
    days = view.days if view.days != DEFAULT_EXPIRED_DAYS else None
    context = page.context(chasing=result, days_param=days)
    return templates.TemplateResponse(request, "nonresponders.html.j2", context, headers=NO_STORE)


def _filename(data: ReportData, extension: str) -> str:
    return f"needlecare-{data.clinic_id}-{data.stem}-{data.snapshot_date.isoformat()}.{extension}"


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(content, media_type=media_type, headers=headers)


@router.get("/dashboard/export.csv")
def export_csv(request: Request, user: CurrentUser, db: DbDep, settings: SettingsDep) -> Response:
    """The report's figures for these filters as tidy CSV (``needlecare.reports.render_csv``)."""
    page = _page(request, db, user)
    if isinstance(page, Response):
        return page
    entry = _report(request, db, settings.resolved_database_url, page.clinic.id, page.view, exact=True)
    body = reports.render_csv(entry.data).encode("utf-8")
    return _attachment(body, "text/csv; charset=utf-8", _filename(entry.data, "csv"))


@router.get("/dashboard/export.pdf")
def export_pdf(request: Request, user: CurrentUser, db: DbDep, settings: SettingsDep) -> Response:
    """The outcome report for these filters as PDF, printed by headless Chromium; a 503 page without one."""
    page = _page(request, db, user)
    if isinstance(page, Response):
        return page
    missing = "No PDF printer (headless Chromium) is installed on this server."
    if not reports.chromium_available():
        return _unavailable(page, missing)
    entry = _report(request, db, settings.resolved_database_url, page.clinic.id, page.view, exact=True)
    try:
        body = reports.render_pdf(entry.data)
    except reports.PdfUnavailable:
        return _unavailable(page, missing)
    except reports.PdfFailed:
        log.warning("PDF export failed for clinic %s", page.clinic.id)
        return _unavailable(page, "The PDF printer (headless Chromium) did not finish this report.")
    return _attachment(body, "application/pdf", _filename(entry.data, "pdf"))


def _unavailable(page: Page, reason: str) -> Response:
    context = page.context(reason=reason)
    headers = {**NO_STORE, "Retry-After": "300"}
    return templates.TemplateResponse(
        page.request, "dashboard_pdf_unavailable.html.j2", context, status_code=503, headers=headers
    )
