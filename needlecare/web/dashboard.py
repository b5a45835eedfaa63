"""The practitioner dashboard (issue 5): outcome overview per injury, one injury's trajectory, non-responders,
and the same figures as CSV or PDF. Behind the login; every figure is the clinic's own.

Routes (all GET, filters as query parameters, a plain form, no script):

- ``/dashboard``: per injury, patients followed up, sessions, the response rate, pain change, pain responders and
  ROM change at one time point (``step``), and adverse events per 100 checked sessions; open escalation cases
  per tier (link to /cases); the newest non-responders (link to the full list).
- ``/dashboard/injury/{slug}``: the trajectory chart (inline SVG) and the per-time-point table of one injury,
  plus its adverse events, escalations and time to recovery.
- ``/dashboard/nonresponders``: sent follow-ups without an answer, newest first, 50 a page.
- ``/dashboard/export.csv`` and ``/dashboard/export.pdf``: ``needlecare.outcomes.reports`` for the same filters, as an
  attachment named ``needlecare-<clinic>-outcomes[-<injury>]-<YYYY-MM-DD>.<ext>``.

Filters: ``injury`` (a catalogue slug), ``practitioner`` (the id of one of the clinic's practitioners),
``period`` (``all``, ``12m``, ``90d``, ``30d`` or ``custom``) with ``since``/``until`` dates (YYYY-MM-DD, both
inclusive, in the clinic's time zone) and ``step`` (the overview's time point). A value that is not allowed gets
a 422 page listing the allowed values. The period selects episodes by their start, like every outcome figure.

Figures come from :func:`needlecare.outcomes.reports.build_report` (suppressed per the report policy), which reads every
answer of the clinic (seconds at 10k patients, tens of seconds at 100k), so pages never compute them in the
request: they read a stored snapshot (table ``report_snapshot``, :mod:`needlecare.outcomes.store`) for the filters,
the exact injury's first and then the all-injuries one (an injury's figures do not depend on the others). The
``refresh-dashboard-figures`` flow precomputes every preset period for all injuries and practitioners; other
filter sets are stored the first time they are asked for. A process keeps the newest decoded snapshots
(:class:`SnapshotCache`) so a chart is drawn once per snapshot.

- A snapshot younger than :data:`CACHE_SECONDS` is served as it is.
- An older one is served too, while a background thread (one per view and process) computes and stores its
  replacement.
- Without one, a background thread computes it and the page waits up to :data:`WAIT_SECONDS`
  (``app.state.dashboard_wait_seconds`` overrides it): if the figures are ready by then the page shows them,
  otherwise it answers "Computing these figures", which reloads itself every few seconds. A computation that
  failed is reported by the next page (503, logged with the clinic, view key and exception type only); the page
  after that tries again.

Downloads use a snapshot of exactly their filters no older than :data:`CACHE_SECONDS`, or compute (and store) one
while the request waits. Each page says when its figures were computed. Non-responders and escalation counts are
always read live.
"""

import importlib
import logging
import threading
import time as timer
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlmodel import Session, col, select

from models import Clinic, Practitioner, StaffUser
from models.base import utcnow
from needlecare.core import clock
from needlecare.core.catalogue import get_catalogue
from needlecare.core.db import get_engine
from needlecare.followup.protocols import get_protocols
from needlecare.outcomes import reports
from needlecare.outcomes import store as report_store
from needlecare.outcomes.nonresponders import DEFAULT_EXPIRED_DAYS, list_nonresponders
from needlecare.outcomes.periods import PERIODS, local_midnight, preset_since
from needlecare.outcomes.queries import ADVERSE_KINDS, STEP_ORDER, AdverseRow, RecoveryRow, StepRow, TrajectoryPoint
from needlecare.outcomes.reports import ReportData
from needlecare.outcomes.suppression import Figure, Reason
from needlecare.safety import casebook
from needlecare.web.auth import CurrentUser
from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.templating import templates

log = logging.getLogger("needlecare.web.dashboard")
router = APIRouter(tags=["dashboard"], include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "same-origin"}
CUSTOM = "custom"
DEFAULT_PERIOD = "all"
DEFAULT_STEP = "outcome_6wk"
PAGE_SIZE = 50
PREVIEW_SIZE = 10
MAX_PAGE = 10_000
MAX_EXPIRED_DAYS = 365
CACHE_SECONDS = 900.0
"""Figures older than this are recomputed in the background (pages) or before a download. The same 15 minutes
as the ``refresh-dashboard-figures`` schedule: a shorter limit would have pages recompute the preset views
between two flow runs (tens of seconds of database work each at 100k patients)."""
CACHE_ENTRIES = 32
WAIT_SECONDS = 1.0
"""How long a page without a stored snapshot waits for its computation before answering "computing"."""
WAIT_STATE = "dashboard_wait_seconds"
REFRESH_SECONDS = 5
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


# ------------------------------------------------------------------------------------------- snapshots


@dataclass
class _Entry:
    """A decoded snapshot, and the charts drawn from it."""

    data: ReportData
    computed_at: datetime
    charts: dict[str, str] = field(default_factory=dict)


@dataclass
class _Job:
    """One background computation of a snapshot."""

    started_at: datetime
    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None
    error: str | None = None  # the exception's type name when it failed
    failed_at: datetime | None = None


Compute = Callable[[], ReportData]
_JobKey = tuple[str, str, str]  # (database, clinic, view key)


class SnapshotCache:
    """One app's decoded snapshots and the background computations of new ones.

    Decoded snapshots are kept per (database, clinic, view key, computed_at), the ``entries`` most recently used
    (an entry is replaced when a newer snapshot of its view is read). At most one computation per (database,
    clinic, view key) runs at a time in this process; the last failure of a view is kept until a page shows it.
    """

    def __init__(self, seconds: float = CACHE_SECONDS, entries: int = CACHE_ENTRIES) -> None:
        self.seconds = seconds
        self.entries = entries
        self._items: OrderedDict[tuple[str, str, str, datetime], _Entry] = OrderedDict()
        self._jobs: dict[_JobKey, _Job] = {}
        self._threads: dict[_JobKey, threading.Thread] = {}
        self._failed: OrderedDict[_JobKey, _Job] = OrderedDict()
        self._lock = threading.Lock()

    def stale(self, computed_at: datetime, now: datetime) -> bool:
        """True when figures computed at ``computed_at`` are older than ``seconds`` at ``now``."""
        return (now - computed_at).total_seconds() > self.seconds

    def entry(self, db: Session, database: str, clinic_id: str, key: str, found: report_store.Stamp) -> _Entry | None:
        """The snapshot ``found`` refers to, decoded once; None when it is gone or no longer decodes."""
        with self._lock:
            entry = self._items.get((database, clinic_id, key, found.computed_at))
            if entry is not None:
                self._items.move_to_end((database, clinic_id, key, found.computed_at))
                return entry
        stored = report_store.get(db, clinic_id, key)
        if stored is None:
            return None
        return self.remember(database, clinic_id, key, stored.data, stored.computed_at)

    def remember(self, database: str, clinic_id: str, key: str, data: ReportData, computed_at: datetime) -> _Entry:
        entry = _Entry(data=data, computed_at=computed_at)
        with self._lock:
            for old in [k for k in self._items if k[:3] == (database, clinic_id, key)]:
                del self._items[old]
            self._items[(database, clinic_id, key, computed_at)] = entry
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return entry

    def start(self, database: str, clinic_id: str, key: str, compute: Compute) -> _Job:
        """The computation of this view under way in this process, or a new one in a background thread.

        ``compute`` stores the snapshot and returns the report; the job then holds it as a decoded entry.
        """
        job_key = (database, clinic_id, key)
        with self._lock:
            job = self._jobs.get(job_key)
            if job is not None:
                return job
            job = _Job(started_at=utcnow())
            thread = threading.Thread(target=self._run, args=(job_key, job, compute), name="dashboard-figures")
            thread.daemon = True
            self._jobs[job_key] = job
            self._threads[job_key] = thread
            self._failed.pop(job_key, None)
        thread.start()
        return job

    def _run(self, job_key: _JobKey, job: _Job, compute: Compute) -> None:
        database, clinic_id, key = job_key
        try:
            data = compute()
            job.entry = self.remember(database, clinic_id, key, data, data.generated_at)
        except Exception as exc:  # shown by the next page without figures; a stale snapshot stays in use
            job.error = type(exc).__name__
            job.failed_at = utcnow()
            log.error("dashboard figures for clinic %s, view %s failed: %s", clinic_id, key, job.error)
        finally:
            with self._lock:
                self._jobs.pop(job_key, None)
                self._threads.pop(job_key, None)
                if job.error is not None:
                    self._failed[job_key] = job
                    while len(self._failed) > self.entries:
                        self._failed.popitem(last=False)
            job.done.set()

    def take_failure(self, database: str, clinic_id: str, key: str) -> _Job | None:
        """The view's last failed computation, once (the page after the one that shows it tries again)."""
        with self._lock:
            return self._failed.pop((database, clinic_id, key), None)

    def wait(self, timeout: float = 60.0) -> None:
        """Until no computation is under way (tests and benchmarks)."""
        deadline = timer.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads.values())
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - timer.monotonic()))
            if timer.monotonic() >= deadline:
                raise TimeoutError("dashboard figures still being computed")

    def clear(self) -> None:
        """Forget the decoded snapshots and failures (the stored snapshots stay)."""
        with self._lock:
            self._items.clear()
            self._failed.clear()


def report_cache(app: FastAPI) -> SnapshotCache:
    """The app's snapshot cache (created on first use); benchmarks clear it to time a page that decodes."""
    cache = getattr(app.state, "dashboard_cache", None)
    if not isinstance(cache, SnapshotCache):
        cache = SnapshotCache()
        app.state.dashboard_cache = cache
    return cache


def _wait_seconds(request: Request) -> float:
    return float(getattr(request.app.state, WAIT_STATE, WAIT_SECONDS))


def _filters(view: View, injury: str | None) -> dict[str, Any]:
    return {"injury": injury, "practitioner_id": view.practitioner_id, "since": view.since, "until": view.until}


def _key(view: View, injury: str | None) -> str:
    return report_store.view_key(injury, view.practitioner_id, view.since, view.until)


def _computation(database: str, clinic_id: str, view: View, injury: str | None) -> Compute:
    """Compute and store the snapshot of these filters, in a session of its own (for a background thread)."""

    def compute() -> ReportData:
        with Session(get_engine(database), expire_on_commit=False) as own:
            data, seconds = report_store.compute(own, clinic_id, **_filters(view, injury))
            report_store.put(own, clinic_id, _key(view, injury), data, seconds)
        return data

    return compute


def _report(page: "Page", db: Session, database: str, view: View) -> _Entry | Response:
    """The figures of a page, or the "computing" / "failed" page while there are none (see the module docstring).

    The exact injury's snapshot is read first, then the all-injuries one; a snapshot older than ``seconds`` is
    shown while its replacement is computed in the background.
    """
    cache = report_cache(page.request.app)
    clinic_id = page.clinic.id
    for injury in [view.injury] if view.injury is None else [view.injury, None]:
        key = _key(view, injury)
        found = report_store.stamp(db, clinic_id, key)
        if found is None:
            continue
        entry = cache.entry(db, database, clinic_id, key, found)
        if entry is None:  # no longer decodes: as if missing
            continue
        if cache.stale(found.computed_at, page.now):
            cache.start(database, clinic_id, key, _computation(database, clinic_id, view, injury))
        return entry
    key = _key(view, view.injury)
    failed = cache.take_failure(database, clinic_id, key)
    if failed is not None:
        return _failed(page, failed)
    job = cache.start(database, clinic_id, key, _computation(database, clinic_id, view, view.injury))
    if job.done.wait(max(0.0, _wait_seconds(page.request))):
        if job.entry is not None:
            return job.entry
        cache.take_failure(database, clinic_id, key)  # shown now; the next page tries again
        return _failed(page, job)
    return _computing(page, job)


def _fresh_report(page: "Page", db: Session, database: str, view: View) -> _Entry:
    """A download's figures: the snapshot of exactly these filters if it is fresh, else computed now (and stored)."""
    cache = report_cache(page.request.app)
    clinic_id = page.clinic.id
    key = _key(view, view.injury)
    found = report_store.stamp(db, clinic_id, key)
    if found is not None and not cache.stale(found.computed_at, page.now):
        entry = cache.entry(db, database, clinic_id, key, found)
        if entry is not None:
            return entry
    data, seconds = report_store.compute(db, clinic_id, **_filters(view, view.injury))
    try:
        report_store.put(db, clinic_id, key, data, seconds)
    except Exception as exc:  # the download does not need the stored copy
        log.warning("storing dashboard figures for clinic %s, view %s failed: %s", clinic_id, key, type(exc).__name__)
    return cache.remember(database, clinic_id, key, data, data.generated_at)


def _computing(page: "Page", job: _Job) -> Response:
    context = page.context(started_at=job.started_at, refresh_seconds=REFRESH_SECONDS)
    return templates.TemplateResponse(page.request, "dashboard_computing.html.j2", context, headers=NO_STORE)


def _failed(page: "Page", job: _Job) -> Response:
    context = page.context(started_at=job.started_at, failed_at=job.failed_at or job.started_at)
    headers = {**NO_STORE, "Retry-After": str(REFRESH_SECONDS)}
    return templates.TemplateResponse(
        page.request, "dashboard_failed.html.j2", context, status_code=503, headers=headers
    )


def warm_up() -> threading.Thread:
    """Import the chart module (matplotlib: about a second here) in a background thread at start-up, so the first
    chart a process draws does not wait for the import."""
    thread = threading.Thread(
        target=importlib.import_module, args=("needlecare.outcomes.charts",), name="dashboard-warm-up", daemon=True
    )
    thread.start()
    return thread


def _trajectory_chart(entry: _Entry, injury: str) -> Markup | None:
    """The injury's trajectory chart (SVG), drawn once per cached report; None when no mean can be shown."""
    if not any(p.injury == injury and p.mean.shown for p in entry.data.trajectory):
        return None
    svg = entry.charts.get(injury)
    if svg is None:
        from needlecare.outcomes.charts import trajectory_svg  # imports matplotlib: only when a chart is drawn

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
    entry = _report(page, db, settings.resolved_database_url, view)
    if isinstance(entry, Response):
        return entry
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
    page.view = view
    entry = _report(page, db, settings.resolved_database_url, view)
    if isinstance(entry, Response):
        return entry
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
    """The report's figures for these filters as tidy CSV (``needlecare.outcomes.reports.render_csv``)."""
    page = _page(request, db, user)
    if isinstance(page, Response):
        return page
    entry = _fresh_report(page, db, settings.resolved_database_url, page.view)
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
    entry = _fresh_report(page, db, settings.resolved_database_url, page.view)
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
