"""The dashboard's routes, behind the login; every figure is the clinic's own.

All GET, filters as query parameters (:mod:`needlecare.web.dashboard.filters`), a plain form, no script:

- ``/dashboard``: the headline across the injuries of its figures (``needlecare.outcomes.headline``: patients past
  the pain responder threshold at their latest answered outcome survey, n, CI, response rate); per injury,
  patients followed up, sessions, the response rate, pain change, pain responders and ROM change at one time
  point (``step``; without one, the outcome survey with data, :func:`~.views.default_step`), and adverse events
  per 100 checked sessions; open escalation cases per tier (link to /cases); the newest non-responders.
- ``/dashboard/injury/{slug}``: the trajectory chart (inline SVG; a sentence instead when no mean can be plotted)
  and the per-time-point table of one injury, plus its adverse events, escalations and time to recovery.
- ``/dashboard/nonresponders``: sent follow-ups without an answer, newest first, 50 a page.
- ``/dashboard/export.csv`` and ``/dashboard/export.pdf``: ``needlecare.outcomes.report_csv``/``report_pdf`` for the
  same filters, as an attachment named ``needlecare-<clinic>-outcomes[-<injury>]-<YYYY-MM-DD>.<ext>``. At most
  ``pdf_concurrency`` PDFs are printed at once per process (each starts a Chromium); a further export waits up to
  ``pdf_queue_seconds`` for a free printer, then gets a 503 page with Retry-After.

A filter value that is not allowed gets a 422 page listing the allowed values. The outcome figures come from
stored snapshots (:mod:`needlecare.web.dashboard.snapshots`); non-responders and escalation counts are always
read live.
"""

import importlib
import logging
import threading
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from needlecare.core.catalogue import get_catalogue
from needlecare.outcomes import report_csv, report_pdf, report_rows
from needlecare.outcomes.definitions import ADVERSE_KINDS
from needlecare.outcomes.headline import headline_text
from needlecare.outcomes.nonresponders import DEFAULT_EXPIRED_DAYS, list_nonresponders
from needlecare.outcomes.report_html import trajectory_note
from needlecare.outcomes.reports import ReportData
from needlecare.safety import casebook
from needlecare.web.auth import CurrentUser
from needlecare.web.dashboard.filters import Problem
from needlecare.web.dashboard.snapshots import Entry, fresh_report, page_report, report_cache
from needlecare.web.dashboard.views import (
    NO_STORE,
    Page,
    default_step,
    guarded_trajectory,
    injury_name,
    invalid_page,
    load_page,
    overview_rows,
    time_points,
)
from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.ratelimit import slots
from needlecare.web.templating import templates

log = logging.getLogger(__name__)
router = APIRouter(tags=["dashboard"], include_in_schema=False)

PAGE_SIZE = 50
PREVIEW_SIZE = 10
ESCALATION_TIERS = ("EMERGENCY", "SAME_DAY", "NEXT_BD")
PDF_BUSY_RETRY_SECONDS = 30


def warm_up() -> threading.Thread:
    """Import the chart module (matplotlib: about a second here) in a background thread at start-up, so the first
    chart a process draws does not wait for the import."""
    thread = threading.Thread(
        target=importlib.import_module, args=("needlecare.outcomes.charts",), name="dashboard-warm-up", daemon=True
    )
    thread.start()
    return thread


def _trajectory_chart(entry: Entry, injury: str) -> Markup | None:
    """The injury's trajectory chart (SVG), drawn once per cached report; None when no mean can be shown."""
    if not any(p.injury == injury and p.mean.shown for p in entry.data.trajectory):
        return None
    svg = entry.charts.get(injury)
    if svg is None:
        from needlecare.outcomes.charts import trajectory_svg  # imports matplotlib: only when a chart is drawn

        svg = trajectory_svg(guarded_trajectory(entry.data), injury, injury_name=injury_name(injury))
        entry.charts[injury] = svg
    return Markup(svg)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, user: CurrentUser, db: DbDep, settings: SettingsDep) -> Response:
    """The overview per injury, open escalations and the newest non-responders."""
    page = load_page(request, db, user)
    if isinstance(page, Response):
        return page
    view = page.view
    entry = page_report(page, db, settings.resolved_database_url, view)
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
    step = view.step or default_step(entry.data, view.injury)
    context = page.context(
        data=entry.data,
        headline=headline_text(entry.data.outcomes.headline, entry.data.policy),
        headline_scope=injury_name(entry.data.filters.injury) if entry.data.filters.injury else "all injuries",
        step=step,
        step_chosen=view.step is None,
        rows=overview_rows(entry.data, step, view.injury),
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
        return invalid_page(request, user, [problem], status=404)
    page = load_page(request, db, user)
    if isinstance(page, Response):
        return page
    view = replace(page.view, injury=slug)
    page.view = view
    entry = page_report(page, db, settings.resolved_database_url, view)
    if isinstance(entry, Response):
        return entry
    data = entry.data
    context = page.context(
        slug=slug,
        name=injury_name(slug),
        data=data,
        chart=_trajectory_chart(entry, slug),
        chart_note=trajectory_note(data, slug),
        points=time_points(data, slug),
        adverse=next((a for a in data.outcomes.adverse if a.injury == slug), None),
        adverse_kinds=[(k, report_rows.ADVERSE_LABELS.get(k, k)) for k in ADVERSE_KINDS],
        escalations=[e for e in data.outcomes.escalations if e.injury == slug],
        recovery=next((r for r in data.outcomes.recovery if r.injury == slug), None),
        cache_seconds=int(report_cache(request.app).seconds),
    )
    return templates.TemplateResponse(request, "dashboard_injury.html.j2", context, headers=NO_STORE)


@router.get("/dashboard/nonresponders", response_class=HTMLResponse)
def nonresponders_page(request: Request, user: CurrentUser, db: DbDep) -> Response:
    """Sent follow-ups without an answer, newest first, a page at a time."""
    page = load_page(request, db, user)
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
    """The report's figures for these filters as tidy CSV (``needlecare.outcomes.report_csv.render_csv``)."""
    page = load_page(request, db, user)
    if isinstance(page, Response):
        return page
    entry = fresh_report(page, db, settings.resolved_database_url, page.view)
    body = report_csv.render_csv(entry.data).encode("utf-8")
    return _attachment(body, "text/csv; charset=utf-8", _filename(entry.data, "csv"))


@router.get("/dashboard/export.pdf")
def export_pdf(request: Request, user: CurrentUser, db: DbDep, settings: SettingsDep) -> Response:
    """The outcome report for these filters as PDF, printed by headless Chromium; a 503 page without one."""
    page = load_page(request, db, user)
    if isinstance(page, Response):
        return page
    missing = "No PDF printer (headless Chromium) is installed on this server."
    if not report_pdf.chromium_available():
        return _unavailable(page, missing)
    printers = slots(request.app, "pdf", settings.pdf_concurrency)
    if not printers.take(settings.pdf_queue_seconds):
        log.info("PDF export for clinic %s refused: %d already printing", page.clinic.id, printers.size)
        busy = "Other PDF reports are being printed right now. Nothing went wrong: try again in a minute."
        return _unavailable(page, busy, retry_after=PDF_BUSY_RETRY_SECONDS, busy=True)
    try:
        entry = fresh_report(page, db, settings.resolved_database_url, page.view)
        body = report_pdf.render_pdf(entry.data)
    except report_pdf.PdfUnavailable:
        return _unavailable(page, missing)
    except report_pdf.PdfFailed:
        log.warning("PDF export failed for clinic %s", page.clinic.id)
        return _unavailable(page, "The PDF printer (headless Chromium) did not finish this report.")
    finally:
        printers.give_back()
    return _attachment(body, "application/pdf", _filename(entry.data, "pdf"))


def _unavailable(page: Page, reason: str, *, retry_after: int = 300, busy: bool = False) -> Response:
    context = page.context(reason=reason, busy=busy)
    headers = {**NO_STORE, "Retry-After": str(retry_after)}
    return templates.TemplateResponse(
        page.request, "dashboard_pdf_unavailable.html.j2", context, status_code=503, headers=headers
    )
