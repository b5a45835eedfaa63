"""Messages that could not be delivered, made visible: the operational alert to the clinic's ``backup`` routes
and the list behind the staff page.

A patient message whose failure is final (a permanent refusal, or retries until it stopped being useful) and a
practitioner alert that failed for good each queue one ``Alert`` with audience ``undelivered`` (unique key
``undelivered:notification:<id>`` or ``undelivered:alert:<id>``). Its text names the kind of message, the row
id and the reason — never the patient. A failed backup or undelivered alert raises no further alert (it would
go to the same routes); it is on the staff page.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from models import Alert, AlertStatus, Clinic, Contact, Notification, NotificationStatus, Patient
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.core.sql import insert_ignore
from needlecare.followup import aftercare

AUDIENCE = "undelivered"
USEFUL_FOR = timedelta(days=7)  # an operational alert older than this is no longer worth retrying


def _queue(db: Session, *, key: str, clinic_id: str, now: datetime, **refs: int | None) -> None:
    insert_ignore(
        db,
        Alert,
        [
            {
                "idempotency_key": key,
                "clinic_id": clinic_id,
                "audience": AUDIENCE,
                "tier": "",
                "status": AlertStatus.PENDING.value,
                "due_at": now,
                "attempts": 0,
                "ambiguous_attempts": 0,
                "created_at": utcnow(),
                "case_id": refs.get("case_id"),
                "notification_id": refs.get("notification_id"),
            }
        ],
    )


def queue_for_notification(db: Session, n: Notification, *, now: datetime) -> None:
    """An operational alert for a patient message that failed for good (in the caller's transaction)."""
    patient = db.get(Patient, n.patient_id)
    if patient is not None:
        _queue(db, key=f"undelivered:notification:{n.id}", clinic_id=patient.clinic_id, now=now, notification_id=n.id)


def queue_for_alert(db: Session, alert: Alert, *, now: datetime) -> None:
    """An operational alert for a case alert that failed for good; none for backup or undelivered alerts."""
    if alert.audience == "primary":
        _queue(db, key=f"undelivered:alert:{alert.id}", clinic_id=alert.clinic_id, now=now, case_id=alert.case_id)


def describe(db: Session, n: Notification) -> str:
    if n.kind == aftercare.TEMPLATE:
        return "the aftercare notice"
    if n.kind == "sms_reply":
        return "the reply to a text message"
    contact = db.get(Contact, n.contact_id) if n.contact_id is not None else None
    step = contact.step_id if contact is not None else "a follow-up"
    return f"reminder {n.sequence} of check-in {step}" if n.sequence else f"check-in {step}"


def compose(db: Session, alert: Alert, clinic: Clinic, settings: Settings) -> tuple[str, str]:
    """Title and plain-text body of an undelivered-message alert."""
    page = f"{settings.public_base_url.rstrip('/')}/undelivered"
    if alert.notification_id is not None:
        n = db.get(Notification, alert.notification_id)
        what = describe(db, n) if n is not None else "a patient message"
        reason = (n.last_error or "no reason recorded") if n is not None else "the message row is missing"
        title = f"Undelivered patient message at {clinic.name}"
        opening = f"{what.capitalize()} (message #{alert.notification_id}) could not be delivered to a patient."
    else:
        title = f"Undelivered alert for case #{alert.case_id} at {clinic.name}"
        failed = db.exec(
            select(Alert).where(Alert.case_id == alert.case_id, Alert.audience == "primary").order_by(col(Alert.id))
        ).first()
        reason = (failed.last_error or "no reason recorded") if failed is not None else "unknown"
        opening = f"The alert for case #{alert.case_id} could not be sent to its routes. Check the alert settings."
    lines = [opening, f"Reason: {reason[:300]}", "", "Nothing more will be tried automatically.", f"See: {page}"]
    return title, "\n".join(lines)


@dataclass(frozen=True)
class UndeliveredRow:
    """One message that failed for good, for the clinic's staff."""

    kind: str  # "patient message" or "alert"
    what: str
    row_id: int
    when: datetime
    patient_name: str | None
    contact: str | None
    reason: str


def list_undelivered(db: Session, clinic_id: str, *, limit: int = 200) -> list[UndeliveredRow]:
    """Failed patient messages and failed alerts of one clinic, newest first."""
    rows: list[UndeliveredRow] = []
    notes = db.exec(
        select(Notification, Patient)
        .join(Patient, col(Notification.patient_id) == Patient.id)
        .where(Patient.clinic_id == clinic_id, Notification.status == NotificationStatus.FAILED.value)
        .order_by(col(Notification.id).desc())
        .limit(limit)
    ).all()
    for n, patient in notes:
        name = " ".join(part for part in (patient.first_name, patient.last_name) if part)
        rows.append(
            UndeliveredRow(
                kind="patient message",
                what=describe(db, n),
                row_id=n.id or 0,
                when=n.due_at,
                patient_name=name or None,
                contact=(patient.phone if n.channel == "sms" else patient.email) or patient.email or patient.phone,
                reason=n.last_error or "",
            )
        )
    alerts = db.exec(
        select(Alert)
        .where(Alert.clinic_id == clinic_id, Alert.status == AlertStatus.FAILED.value)
        .order_by(col(Alert.id).desc())
        .limit(limit)
    ).all()
    for a in alerts:
        what = f"{a.audience} alert" + (f" for case #{a.case_id}" if a.case_id is not None else "")
        rows.append(UndeliveredRow("alert", what, a.id or 0, a.due_at, None, None, a.last_error or ""))
    return sorted(rows, key=lambda r: r.when, reverse=True)[:limit]
