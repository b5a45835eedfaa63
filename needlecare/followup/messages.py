"""What one outbox row becomes at send time: a composed email, a deferral, or a skip with a reason.

Content is rendered here, at send time, so a corrected template or protocol applies to every
message not yet sent. Checks are made again here (opt-out, answered, window, quiet hours).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from models import Clinic, Contact, ContactStatus, Notification, Patient, TreatmentSession
from needlecare.core import clock
from needlecare.core.catalogue import Catalogue
from needlecare.core.rendering import RenderedEmail, emergency_number, place_time, render_email
from needlecare.core.settings import Settings
from needlecare.core.tokens import make_token
from needlecare.followup import aftercare
from needlecare.followup.delivery import Attachment
from needlecare.followup.icalendar import CheckDate, follow_up_calendar
from needlecare.followup.protocol_schema import Step
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import OPTIONAL, redflag_options
from needlecare.followup.unsubscribe import make_unsubscribe_token


@dataclass(frozen=True)
class Compose:
    to: str
    email: RenderedEmail
    headers: dict[str, str]
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Defer:
    until: datetime


Decision = Compose | Skip | Defer


def compose(db: Session, n: Notification, *, now: datetime, settings: Settings, catalogue: Catalogue) -> Decision:
    patient = db.get(Patient, n.patient_id)
    clinic = db.get(Clinic, patient.clinic_id) if patient else None
    if patient is None or clinic is None:
        return Skip("patient or clinic row is missing")
    if patient.opted_out_at is not None:
        return Skip("patient opted out")
    if not patient.consent_email:
        return Skip("no consent to email")
    if not patient.email:
        return Skip("no email address on file")
    if n.kind == aftercare.TEMPLATE:
        return _aftercare(db, n, patient, clinic, now=now, settings=settings, catalogue=catalogue)
    return _survey(db, n, patient, clinic, now=now, settings=settings)


def _headers(n: Notification, patient: Patient, settings: Settings) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe, and the row id (never patient data) for tracing."""
    url = unsubscribe_url(patient, settings)
    return {
        "X-Needlecare-Notification": str(n.id),
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe_url(patient: Patient, settings: Settings) -> str:
    token = make_unsubscribe_token(_id(patient.id), settings.secret_key.get_secret_value())
    return f"{settings.public_base_url.rstrip('/')}/u/{token}"


def _aftercare(
    db: Session,
    n: Notification,
    patient: Patient,
    clinic: Clinic,
    *,
    now: datetime,
    settings: Settings,
    catalogue: Catalogue,
) -> Decision:
    session = db.get(TreatmentSession, n.session_id) if n.session_id else None
    if session is None:
        return Skip("session row is missing")
    if now - session.completed_at > timedelta(hours=settings.aftercare_max_age_hours):
        return Skip(f"session ended more than {settings.aftercare_max_age_hours:g} h ago")
    protocol = get_protocol(session.injury)
    ctx = aftercare.context(
        aftercare.AftercareInputs(clinic, patient, session), catalogue, now=now, base_url=settings.public_base_url
    )
    checks = _planned_checks(db, session)
    ctx.update(
        needled_where=needled_where(ctx["regions"], session.side),
        emergency_number=emergency_number(clinic),
        aftercare_points=protocol.aftercare_points,
        check_dates=[_local_label(c.starts_at, patient.timezone) + f" — {c.title}" for c in checks],
        unsubscribe_url=unsubscribe_url(patient, settings),
    )
    attachments = []
    if checks:
        ics = follow_up_calendar(checks, clinic_name=clinic.name, now=now)
        attachments.append(Attachment("follow-up-checks.ics", "text/calendar", ics))
    return Compose(patient.email or "", render_email(n.kind, ctx), _headers(n, patient, settings), attachments)


def _planned_checks(db: Session, session: TreatmentSession) -> list[CheckDate]:
    contacts = db.exec(
        select(Contact)
        .where(
            (Contact.session_id == session.id)
            | ((Contact.episode_id == session.episode_id) & (Contact.scope == "episode")),
            Contact.status == ContactStatus.PLANNED.value,
        )
        .order_by(col(Contact.due_at))
    ).all()
    protocol = get_protocol(session.injury)
    return [CheckDate(c.idempotency_key, protocol.step(c.step_id).title, c.due_at) for c in contacts]


def _survey(
    db: Session, n: Notification, patient: Patient, clinic: Clinic, *, now: datetime, settings: Settings
) -> Decision:
    contact = db.get(Contact, n.contact_id) if n.contact_id else None
    if contact is None:
        return Skip("contact row is missing")
    if contact.status == ContactStatus.ANSWERED.value:
        return Skip("answered already")
    if contact.status != ContactStatus.SENT.value or now >= contact.window_closes_at:
        return Skip("window closed")
    if n.sequence > 0:
        allowed = clock.next_allowed(now, patient.timezone, settings.quiet_hours_start, settings.quiet_hours_end)
        if allowed != now:
            return Defer(allowed) if allowed < contact.window_closes_at else Skip("window closes during quiet hours")
    step = get_protocol(contact.injury).step(contact.step_id)
    token = make_token(
        _id(contact.id),
        patient.id or 0,
        contact.step_id,
        contact.window_closes_at,
        settings.secret_key.get_secret_value(),
    )
    ctx = {
        "first_name": patient.first_name,
        "clinic": {"name": clinic.name, "phone": clinic.phone, "email": clinic.email},
        "step_title": step.title,
        "questions": question_summary(step, contact.injury),
        "emergency_number": emergency_number(clinic),
        "safety": step.safety,
        "is_reminder": n.sequence > 0,
        "survey_url": f"{settings.public_base_url.rstrip('/')}/s/{token}",
        "closes_label": _local_label(contact.window_closes_at, patient.timezone),
        "unsubscribe_url": unsubscribe_url(patient, settings),
    }
    return Compose(patient.email or "", render_email("survey", ctx), _headers(n, patient, settings))


def _local_label(moment: datetime, tz: str) -> str:
    here = clock.local(moment, tz)
    return f"{here:%A} {here.day} {here:%B}, {here:%H:%M} ({place_time(tz)})"


def needled_where(region_names: list[str], side: str) -> str:
    """The regions needled with the side, in lower case: "left calf", "left calf and left shin",
    "calf and shin, on both sides"; the names alone for any other side."""
    names = [name.lower() for name in region_names]
    if side in ("left", "right"):
        names = [f"{side} {name}" for name in names]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed}, on both sides" if side == "both" else listed


def question_summary(step: Step, injury: str) -> dict[str, int | bool]:
    """What the check-in asks, for an honest count in its email: the questions that need an answer (the
    red-flag checklist and the follow-up about a run apart), how many warning signs the checklist lists, and what is
    optional (the self-test, the comment box)."""
    asked = set(step.questions)
    return {
        "count": len(asked - OPTIONAL - {"redflags"}),
        "if_ran": "run_pain" in asked and "ran" in asked,
        "checklist": len(redflag_options(injury)) if "redflags" in asked else 0,
        "self_test": "rom" in asked,
        "comment": "free_text" in asked,
    }


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover
        raise RuntimeError("row has no id")
    return value


def useful_until(db: Session, n: Notification, settings: Settings) -> datetime | None:
    """The last moment this message is still worth sending: the aftercare notice until it would be too old,
    a check-in or reminder until its answer window closes. None: no limit known."""
    if n.kind == aftercare.TEMPLATE:
        session = db.get(TreatmentSession, n.session_id) if n.session_id is not None else None
        if session is None:
            return None
        return session.completed_at + timedelta(hours=settings.aftercare_max_age_hours)
    contact = db.get(Contact, n.contact_id) if n.contact_id is not None else None
    return contact.window_closes_at if contact is not None else None


def message_id(n: Notification, settings: Settings) -> str:
    """The Message-ID every attempt at this notification carries (stable, names no patient)."""
    domain = settings.mail_from.rpartition("@")[2] or "needlecare.local"
    return f"<notification.{n.id}.{n.idempotency_key.replace(':', '.')}@{domain}>"
