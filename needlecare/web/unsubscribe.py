"""Unsubscribe: GET shows a confirm button (link scanners must not unsubscribe anyone);
POST unsubscribes at once — also the RFC 8058 one-click POST that mail clients send."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from models import AuditEvent, Patient
from models.base import utcnow
from needlecare.followup.unsubscribe import BadUnsubscribeToken, read_unsubscribe_token
from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.templating import templates

router = APIRouter(tags=["patients"])


def _patient(token: str, settings: SettingsDep, db: DbDep) -> Patient | None:
    try:
        patient_id = read_unsubscribe_token(token, settings.secret_key.get_secret_value())
    except BadUnsubscribeToken:
        return None
    return db.get(Patient, patient_id)


@router.get("/u/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request, settings: SettingsDep, db: DbDep) -> HTMLResponse:
    patient = _patient(token, settings, db)
    if patient is None:
        return templates.TemplateResponse(request, "unsubscribe.html.j2", {"state": "invalid"}, status_code=404)
    state = "done" if patient.opted_out_at else "confirm"
    return templates.TemplateResponse(request, "unsubscribe.html.j2", {"state": state, "token": token})


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request, settings: SettingsDep, db: DbDep) -> HTMLResponse:
    patient = _patient(token, settings, db)
    if patient is None:
        return templates.TemplateResponse(request, "unsubscribe.html.j2", {"state": "invalid"}, status_code=404)
    if patient.opted_out_at is None:
        patient.opted_out_at = utcnow()
        db.add(patient)
        db.add(AuditEvent(actor="patient", action="patient.opted_out", entity="patient", entity_id=str(patient.id)))
        db.commit()
    return templates.TemplateResponse(request, "unsubscribe.html.j2", {"state": "done"})
