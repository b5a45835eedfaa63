"""Staff pages for escalation cases: the open list by tier and age, one case, acknowledge and resolve.

Behind the practitioner login; every query is scoped to the user's clinic (another clinic's case is a 404).
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from models import Clinic
from models.base import utcnow
from needlecare.core import clock
from needlecare.followup.questions import BRUISE_OPTIONS, GROC_LABELS, NERVE_FOLLOW_UPS, REDFLAGS
from needlecare.safety import casebook, escalation
from needlecare.staff import labels
from needlecare.staff.casepage import confirmation, session_context
from needlecare.web.auth import CsrfChecked, CurrentUser
from needlecare.web.deps import DbDep
from needlecare.web.templating import templates

router = APIRouter(tags=["cases"], include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}
templates.env.globals.update(labels.filters())  # tier_name, step_name, rule_title, ... for every staff page


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _common(request: Request, user: Any, tz: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "request": request,
        "user": user,
        "now": now,
        "age": lambda moment: _age((now - moment).total_seconds()),
        "local": lambda moment: clock.local(moment, tz).strftime("%a %d %b %H:%M"),
        "tz": tz,
    }


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, user: CurrentUser, db: DbDep, show: str = "active") -> Response:
    now = utcnow()
    clinic_tz = _clinic_tz(db, user.clinic_id)
    status = "resolved" if show == "resolved" else "active"
    context = {
        **_common(request, user, clinic_tz),
        "show": status,
        "cases": casebook.list_cases(db, user.clinic_id, now=now, status=status),
        "counts": casebook.counts_by_tier(db, user.clinic_id),
    }
    return templates.TemplateResponse(request, "cases.html.j2", context, headers=NO_STORE)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: int, user: CurrentUser, db: DbDep, done: str | None = None) -> Response:
    """One case; ``?done=acknowledged`` or ``?done=resolved`` (the redirect after an action) adds its confirmation."""
    return _case_response(request, case_id, user, db, done=done)


@router.post("/cases/{case_id}/acknowledge", response_class=HTMLResponse)
def acknowledge(request: Request, case_id: int, user: CurrentUser, db: DbDep, form: CsrfChecked) -> Response:
    try:
        escalation.acknowledge(db, case_id, user, now=utcnow())
    except escalation.CaseError as exc:
        db.rollback()
        return _case_response(request, case_id, user, db, error=str(exc), status=409)
    return RedirectResponse(f"/cases/{case_id}?done=acknowledged", status_code=303)


@router.post("/cases/{case_id}/resolve", response_class=HTMLResponse)
def resolve(request: Request, case_id: int, user: CurrentUser, db: DbDep, form: CsrfChecked) -> Response:
    note = str(form.get("note") or "")
    try:
        escalation.resolve(db, case_id, user, note, now=utcnow())
    except escalation.CaseError as exc:
        db.rollback()
        return _case_response(request, case_id, user, db, error=str(exc), note=note, status=422)
    return RedirectResponse(f"/cases/{case_id}?done=resolved", status_code=303)


def _case_response(
    request: Request,
    case_id: int,
    user: Any,
    db: DbDep,
    *,
    error: str | None = None,
    note: str = "",
    status: int = 200,
    done: str | None = None,
) -> Response:
    detail = casebook.case_detail(db, user.clinic_id, case_id, now=utcnow())
    if detail is None:
        return templates.TemplateResponse(
            request, "case_missing.html.j2", {"request": request, "user": user, "case_id": case_id}, status_code=404
        )
    context = {
        **_common(request, user, detail.clinic.timezone),
        "d": detail,
        "session": session_context(db, detail.case, detail.clinic.timezone),
        "confirmation": None if error else confirmation(detail.case, done, detail.clinic.timezone),
        "error": error,
        "note": note,
        "redflag_labels": {**REDFLAGS, **NERVE_FOLLOW_UPS},
        "bruise_labels": BRUISE_OPTIONS,
        "groc_labels": GROC_LABELS,
    }
    return templates.TemplateResponse(request, "case.html.j2", context, status_code=status, headers=NO_STORE)


def _clinic_tz(db: DbDep, clinic_id: str) -> str:
    clinic = db.get(Clinic, clinic_id)
    return clinic.timezone if clinic else "UTC"
