"""View models of the dashboard pages: the overview rows, the injury page's time points, the trajectory with the n
hidden where it would give back a suppressed count, and :class:`Page` (the user, clinic, checked filters and the
form's options every dashboard template receives), plus the 422 page for filters that are not allowed."""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlmodel import Session, col, select

from models import Clinic, Practitioner, StaffUser
from models.base import utcnow
from needlecare.core import clock
from needlecare.core.catalogue import get_catalogue
from needlecare.outcomes import report_rows, reports
from needlecare.outcomes.definitions import PAIN, STEP_ORDER
from needlecare.outcomes.periods import PERIODS
from needlecare.outcomes.reports import ReportData
from needlecare.outcomes.results import AdverseRow, RecoveryRow, StepRow, TrajectoryPoint
from needlecare.outcomes.suppression import Figure, Reason, shortfall
from needlecare.web.dashboard.filters import (
    DEFAULT_STEP,
    InvalidFilters,
    Problem,
    View,
    read_filters,
    step_ids,
    step_title,
)
from needlecare.web.templating import templates

NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "same-origin"}
OVERVIEW_ADVERSE = ("soreness_past_72h", "bruise_any", "red_flag")


def injury_name(slug: str) -> str:
    return reports.injury_name(slug)


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
                (report_rows.ADVERSE_LABELS.get(kind, kind), adverse.events[kind].per_100_sessions)
                for kind in OVERVIEW_ADVERSE
                if kind in adverse.events
            )
        rows.append(
            OverviewRow(
                injury=slug,
                name=injury_name(slug),
                recovery=next((r for r in o.recovery if r.injury == slug), None),
                adverse=adverse,
                step=next((r for r in o.rows if r.injury == slug and r.step_id == step_id), None),
                events=events,
            )
        )
    return rows


def default_step(data: ReportData, injury: str | None) -> str:
    """The overview's time point when none is asked for: the outcome survey (episode-scoped step) that has data.

    1. The latest outcome survey at which the most injuries show a paired pain change (at least ``min_paired``
       paired answers, so the mean is shown); if none reaches the minimum anywhere,
    2. the outcome survey with the most paired pain answers (the latest on a tie); if none has any,
    3. the outcome survey with the most surveys due (the latest on a tie); if none is due yet, :data:`DEFAULT_STEP`.

    Only ``injury``'s rows count when the overview is filtered to one injury. Rule 2 and 3 compare raw counts
    that may be hidden on the page: the choice says which time point has more, never how many.
    """
    rows = [r for r in data.outcomes.rows if r.scope == "episode" and (injury is None or r.injury == injury)]
    if not rows:
        return DEFAULT_STEP
    order = {s: i for i, s in enumerate(STEP_ORDER)}
    reach: dict[str, int] = {}
    paired: dict[str, int] = {}
    due: dict[str, int] = {}
    for r in rows:
        shown = r.pain is not None and r.pain.mean.shown
        reach[r.step_id] = reach.get(r.step_id, 0) + int(shown)
        paired[r.step_id] = paired.get(r.step_id, 0) + (r.pain.raw.n if r.pain is not None else 0)
        due[r.step_id] = due.get(r.step_id, 0) + r.raw.contacts_due
    for measure in (reach, paired, due):
        if max(measure.values()) > 0:
            return max(measure, key=lambda s: (measure[s], order.get(s, len(STEP_ORDER)), s))
    return DEFAULT_STEP


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
        pain = next((p for p in here if p.measure == PAIN), None)
        if step == "baseline" and not here:
            continue
        result.append(
            TimePoint(
                step_id=step,
                title="Baseline (first session)" if step == "baseline" else step_title(step),
                row=rows.get(step),
                pain=pain,
                rom=tuple(p for p in here if p.measure != PAIN),
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
            "injury_name": injury_name,
            "periods": [(k, label) for k, (label, _) in PERIODS.items()],
            "period_label": PERIODS[self.view.period][0] if self.view.period in PERIODS else "Custom dates",
            "steps": [(s, step_title(s)) for s in step_ids()],
            "step_title": step_title,
            "interval": interval,
            "shortfall": shortfall,
            "local": lambda moment: clock.local(moment, tz).strftime("%a %d %b %Y %H:%M"),
            "local_date": lambda moment: clock.local(moment, tz).strftime("%d %b %Y"),
            **extra,
        }


def load_page(request: Request, db: Session, user: StaffUser) -> Page | Response:
    """The page's checked filters, or the 422 page listing what is wrong with them."""
    clinic = db.get(Clinic, user.clinic_id)
    if clinic is None:  # pragma: no cover - a staff user always belongs to a clinic (foreign key)
        raise RuntimeError("staff user without a clinic")
    practitioners = _practitioners(db, clinic.id)
    now = utcnow()
    try:
        view = read_filters(request.query_params, practitioners=practitioners, tz=clinic.timezone, now=now)
    except InvalidFilters as exc:
        return invalid_page(request, user, exc.problems)
    return Page(request=request, user=user, clinic=clinic, practitioners=practitioners, view=view, now=now)


def invalid_page(request: Request, user: StaffUser, problems: list[Problem], *, status: int = 422) -> Response:
    """The page listing every filter that is not allowed and what is (422, or 404 for an unknown injury page)."""
    context = {"request": request, "user": user, "problems": problems}
    return templates.TemplateResponse(
        request, "dashboard_invalid.html.j2", context, status_code=status, headers=NO_STORE
    )
