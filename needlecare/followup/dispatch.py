"""Dispatch: turn follow-up contacts that fall due into messages, checking again at send time.

One pass, as of ``now``: close contacts whose window has passed, then for each due contact (safety
checks first) decide — send, defer (quiet hours, one survey per patient per day), or skip with a
recorded reason (opted out, no channel of the step allowed — consent, address and opt-out per channel —,
superseded by a newer session, window closed).
Sending means writing the message rows (the first message now, reminders at their times) with
unique keys; the outbox delivers them. Contacts are claimed by an atomic status change, so two
dispatchers never open the same contact.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from models import (
    AuditEvent,
    Clinic,
    Contact,
    ContactStatus,
    Notification,
    NotificationStatus,
    Patient,
    TreatmentSession,
)
from needlecare.core import clock
from needlecare.core.db import get_remembered
from needlecare.core.settings import Settings
from needlecare.core.sql import insert_ignore
from needlecare.followup import channels
from needlecare.followup.protocols import get_protocol

C = ContactStatus
SURVEY, REMINDER = "survey", "reminder"


@dataclass
class DispatchResult:
    seen: int = 0
    opened: int = 0
    deferred: int = 0
    skipped: int = 0
    expired: int = 0
    unchanged: int = 0  # another dispatcher changed the row first
    notes: list["Note"] = field(default_factory=list)  # every deferral and skip of this pass, with its reason


@dataclass(frozen=True)
class Note:
    """Why a due check-in was not sent in this pass, and (for a deferral) when it will go."""

    what: str  # e.g. "check-in check_24h (contact 7)"; never patient data
    action: str  # "deferred", "skipped", "retrying" or "failed"
    reason: str
    until: datetime | None
    timezone: str


def message_key(contact_id: int, sequence: int) -> str:
    return f"contact:{contact_id}:{sequence}"


def dispatch_due(db: Session, *, now: datetime, settings: Settings, limit: int = 500) -> DispatchResult:
    result = DispatchResult(expired=_close_expired(db, now=now))
    due = db.exec(
        select(Contact)
        .where(Contact.status == C.PLANNED.value, col(Contact.due_at) <= now)
        .order_by(col(Contact.safety).desc(), col(Contact.due_at), col(Contact.id))
        .limit(limit)
    ).all()
    result.seen = len(due)
    for contact in due:
        outcome, reason, until, tz = _decide(db, contact, now=now, settings=settings)
        setattr(result, outcome, getattr(result, outcome) + 1)
        if outcome in ("deferred", "skipped"):
            result.notes.append(Note(f"check-in {contact.step_id} (contact {contact.id})", outcome, reason, until, tz))
    db.commit()
    return result


def next_due(db: Session, *, after: datetime, settings: Settings, look_at: int = 50) -> datetime | None:
    """The first moment after ``after`` at which a planned check-in can go: its due time, moved past the
    patient's quiet hours. None when nothing is planned (a pass as of then sends it)."""
    planned = db.exec(
        select(Contact, Patient)
        .join(Patient, col(Patient.id) == col(Contact.patient_id))
        .where(Contact.status == C.PLANNED.value, col(Contact.due_at) > after)
        .order_by(col(Contact.due_at))
        .limit(look_at)
    ).all()
    moments = [
        clock.next_allowed(contact.due_at, patient.timezone, settings.quiet_hours_start, settings.quiet_hours_end)
        for contact, patient in planned
    ]
    return min(moments, default=None)


def _close_expired(db: Session, *, now: datetime) -> int:
    """Sent contacts whose window closed unanswered become expired; planned ones are skipped."""
    expired = db.exec(
        update(Contact)
        .where(col(Contact.status) == C.SENT.value, col(Contact.window_closes_at) <= now)
        .values(status=C.EXPIRED.value)
    )
    missed = db.exec(
        update(Contact)
        .where(col(Contact.status) == C.PLANNED.value, col(Contact.window_closes_at) <= now)
        .values(status=C.SKIPPED.value, skip_reason="window closed before it could be sent")
    )
    db.commit()
    return int(expired.rowcount or 0) + int(missed.rowcount or 0)


def _decide(
    db: Session, contact: Contact, *, now: datetime, settings: Settings
) -> tuple[str, str, datetime | None, str]:
    """(outcome, reason, deferred until, the patient's time zone)."""
    patient = db.get(Patient, contact.patient_id)
    tz = patient.timezone if patient is not None else "UTC"
    reason = _skip_reason(db, contact, patient, settings=settings)
    if reason is not None:
        return _skip(db, contact, reason), reason, None, tz
    assert patient is not None
    send_at = clock.next_allowed(now, tz, settings.quiet_hours_start, settings.quiet_hours_end)
    if send_at == now and _survey_already_today(db, contact, patient, now=now):
        send_at = clock.start_of_next_day(now, tz, settings.quiet_hours_end)
        why = "one survey per patient per day"
    else:
        why = f"quiet hours ({settings.quiet_hours_start:02d}:00-{settings.quiet_hours_end:02d}:00) in {tz}"
    if send_at != now:
        if send_at >= contact.window_closes_at:
            reason = f"window closes before the next allowed time ({why})"
            return _skip(db, contact, reason), reason, None, tz
        return _defer(db, contact, send_at), why, send_at, tz
    return _open(db, contact, patient, now=now, settings=settings), "", None, tz


def _skip_reason(db: Session, contact: Contact, patient: Patient | None, *, settings: Settings) -> str | None:
    if patient is None:
        return "patient row is missing"
    step = get_protocol(contact.injury).step(contact.step_id)
    route = channels.sms_route(get_remembered(db, Clinic, patient.clinic_id), settings)
    choice = channels.choose(step.channels, patient, route=route)
    if choice.channel is None:
        return choice.reason
    if contact.scope == "session" and _superseded(db, contact):
        return "superseded by a newer session"
    return None


def _superseded(db: Session, contact: Contact) -> bool:
    """A newer session of the same episode happened before this check fell due. Safety checks fold
    into the newer session's own checks (domain.md §4.2: the 72 h check folds into the next 24 h
    check), and steps marked ``skip_if_next_session_before_due`` (the 7 d check) are skipped."""
    return contact.id in superseded_among(db, [contact])


def superseded_among(db: Session, contacts: Sequence[Contact]) -> set[int]:
    """The ids of ``contacts`` that :func:`_superseded` holds for, from one read of their patients' sessions."""
    candidates = [c for c in contacts if c.id is not None and c.session_id is not None and _can_be_superseded(c)]
    if not candidates:
        return set()
    sessions = db.exec(
        select(TreatmentSession).where(col(TreatmentSession.patient_id).in_({c.patient_id for c in candidates}))
    ).all()
    by_id = {row.id: row for row in sessions}
    out: set[int] = set()
    for contact in candidates:
        own = by_id.get(contact.session_id)
        if own is None:
            continue
        if any(
            row.patient_id == own.patient_id
            and row.episode_id == own.episode_id
            and own.completed_at < row.completed_at <= contact.due_at
            for row in sessions
        ):
            out.add(int(contact.id or 0))
    return out


def _can_be_superseded(contact: Contact) -> bool:
    step = get_protocol(contact.injury).step(contact.step_id)
    return bool(step.skip_if_next_session_before_due or step.safety)


def _survey_already_today(db: Session, contact: Contact, patient: Patient, *, now: datetime) -> bool:
    """At most one survey per patient per local calendar day (reminders do not count)."""
    today = clock.local_date(now, patient.timezone)
    earlier = db.exec(
        select(Contact.sent_at).where(
            Contact.patient_id == patient.id,
            col(Contact.id) != contact.id,
            col(Contact.sent_at).is_not(None),
            col(Contact.sent_at) > now - timedelta(days=2),
        )
    ).all()
    return any(sent is not None and clock.local_date(sent, patient.timezone) == today for sent in earlier)


def _claim(db: Session, contact: Contact, **values: object) -> bool:
    """Change a planned contact only if nobody else did first."""
    changed = db.exec(
        update(Contact)
        .where(
            and_(
                col(Contact.id) == contact.id,
                col(Contact.status) == C.PLANNED.value,
                col(Contact.due_at) == contact.due_at,
            )
        )
        .values(**values)
    )
    return bool(changed.rowcount)


def _skip(db: Session, contact: Contact, reason: str) -> str:
    if _claim(db, contact, status=C.SKIPPED.value, skip_reason=reason):
        db.add(
            AuditEvent(
                actor="dispatch",
                action="contact.skipped",
                entity="contact",
                entity_id=str(contact.id),
                detail={"reason": reason, "step": contact.step_id},
            )
        )
        return "skipped"
    return "unchanged"


def _defer(db: Session, contact: Contact, until: datetime) -> str:
    return "deferred" if _claim(db, contact, due_at=until) else "unchanged"


def _open(db: Session, contact: Contact, patient: Patient, *, now: datetime, settings: Settings) -> str:
    """Write the check-in's messages. Each row's channel is the one it would go by now; the sender picks
    again at send time (consent or opt-out may change meanwhile) and records the one it used."""
    if not _claim(db, contact, status=C.SENT.value, sent_at=now):
        return "unchanged"
    cid = contact.id
    assert cid is not None
    step = get_protocol(contact.injury).step(contact.step_id)
    route = channels.sms_route(get_remembered(db, Clinic, patient.clinic_id), settings)

    def channel(sequence: int) -> str:
        listed = channels.for_message(step, sequence)
        return channels.choose(listed, patient, route=route).channel or listed[0]

    rows = [_message(contact, cid, 0, SURVEY, channel(0), due=now, now=now)]
    for number, hours in enumerate(step.reminder_hours, start=1):
        due = now + timedelta(hours=hours)
        if due < contact.window_closes_at:
            rows.append(_message(contact, cid, number, REMINDER, channel(number), due=due, now=now))
    insert_ignore(db, Notification, rows)
    return "opened"


def _message(
    contact: Contact, cid: int, sequence: int, kind: str, channel: str, *, due: datetime, now: datetime
) -> dict[str, object]:
    return {
        "idempotency_key": message_key(cid, sequence),
        "kind": kind,
        "channel": channel,
        "session_id": contact.session_id,
        "contact_id": cid,
        "sequence": sequence,
        "patient_id": contact.patient_id,
        "status": NotificationStatus.PENDING.value,
        "due_at": due,
        "attempts": 0,
        "created_at": now,
    }
