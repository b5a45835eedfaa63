"""What one outbox row becomes at send time: a composed email or text message, a deferral, or a skip.

Content is rendered here, at send time, so a corrected template or protocol applies to every
message not yet sent. Checks are made again here (opt-out, answered, window, quiet hours), and the
channel is picked here: the first of the step's channels (``channels`` for the first message,
``reminder_channels`` for reminders) the patient allows now (:mod:`needlecare.followup.channels`). The
aftercare notice is email only (too long for a text). The reply to a patient's text (kind ``sms_reply``)
is its stored ``reply_text``, sent as it is; the one to a STOP or HELP goes even after an opt-out.

Check-in times in a message are the times the sender will really open them
(:func:`planning.expected_sends`). Every message also brings the patient's calendar up to date: a
check-in listed earlier that has moved comes again with a higher SEQUENCE, one that will not be sent in a
``METHOD:CANCEL`` file (see :mod:`needlecare.followup.icalendar`).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from models import Clinic, Contact, ContactStatus, InboundAction, Notification, Patient, SmsInbound, TreatmentSession
from needlecare.core import clock
from needlecare.core.catalogue import Catalogue
from needlecare.core.db import get_remembered
from needlecare.core.rendering import RenderedEmail, emergency_number, place_time, render_email
from needlecare.core.settings import Settings
from needlecare.core.tokens import make_token
from needlecare.followup import aftercare, channels, icalendar, planning, sms_text
from needlecare.followup.delivery import Attachment
from needlecare.followup.icalendar import Announced, CheckDate
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
class ComposeSms:
    to: str  # E.164
    text: str
    route: str  # the Apprise URL without the recipient


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Defer:
    until: datetime


Decision = Compose | ComposeSms | Skip | Defer
SMS_REPLY = "sms_reply"
REPLY_USEFUL_FOR = timedelta(hours=24)  # a reply to a text is not sent later than this after the text came


def compose(db: Session, n: Notification, *, now: datetime, settings: Settings, catalogue: Catalogue) -> Decision:
    patient = db.get(Patient, n.patient_id)
    clinic = get_remembered(db, Clinic, patient.clinic_id) if patient else None
    if patient is None or clinic is None:
        return Skip("patient or clinic row is missing")
    if n.kind == SMS_REPLY:
        return _sms_reply(db, n, patient, clinic, settings=settings)
    if n.kind == aftercare.TEMPLATE:
        why = channels.refusal(channels.EMAIL, patient, route=None)
        if why is not None:
            return Skip(why)
        return _aftercare(db, n, patient, clinic, now=now, settings=settings, catalogue=catalogue)
    return _survey(db, n, patient, clinic, now=now, settings=settings)


def _sms_reply(db: Session, n: Notification, patient: Patient, clinic: Clinic, *, settings: Settings) -> Decision:
    inbound = db.get(SmsInbound, n.sms_inbound_id) if n.sms_inbound_id is not None else None
    if inbound is None or not inbound.reply_text:
        return Skip("the text message this answers, or its reply, is missing")
    confirms = inbound.action in (InboundAction.STOP.value, InboundAction.HELP.value)  # carriers require these
    route = channels.sms_route(clinic, settings)
    why = channels.refusal(channels.SMS, patient, route=route, ignore_opt_out=confirms)
    if why is not None or route is None:
        return Skip(why or channels.NO_SMS_ROUTE)
    return ComposeSms(inbound.from_phone, inbound.reply_text, route)


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
    listed = _session_checks(db, session)
    calendar = _calendar(db, n, patient, clinic, listed=listed, now=now, settings=settings)
    ctx.update(
        needled_where=needled_where(ctx["regions"], session.side),
        emergency_number=emergency_number(clinic),
        aftercare_points=protocol.aftercare_points,
        check_dates=calendar.labels,
        calendar_changes=calendar.changes,
        unsubscribe_url=unsubscribe_url(patient, settings),
    )
    email = render_email(n.kind, ctx)
    return Compose(patient.email or "", email, _headers(n, patient, settings), calendar.attachments)


def _session_checks(db: Session, session: TreatmentSession) -> list[Contact]:
    """The planned check-ins an aftercare email lists: the session's own and its episode's."""
    return list(
        db.exec(
            select(Contact)
            .where(
                (Contact.session_id == session.id)
                | ((Contact.episode_id == session.episode_id) & (Contact.scope == "episode")),
                Contact.status == ContactStatus.PLANNED.value,
            )
            .order_by(col(Contact.due_at))
        ).all()
    )


# A listed check-in counts as moved when its send time changes by this much (less is the same event).
MOVED_BY = timedelta(minutes=15)


@dataclass(frozen=True)
class Calendar:
    labels: list[str]  # the listed check-ins, at the times they will be sent
    changes: list[str]  # check-ins shown earlier that have moved or will not be sent
    attachments: list[Attachment]


def _calendar(
    db: Session,
    n: Notification,
    patient: Patient,
    clinic: Clinic,
    *,
    listed: list[Contact],
    now: datetime,
    settings: Settings,
) -> Calendar:
    """The calendar part of a message: ``listed`` check-ins at their real send times, plus every change to
    what the patient's calendar shows; records what this message attaches."""
    pid = _id(patient.id)
    every = db.exec(select(Contact).where(Contact.patient_id == pid)).all()
    expected = planning.expected_sends(db, pid, now=now, settings=settings, contacts=every)
    shown = icalendar.announced(db, pid, excluding=n.id)
    domain = icalendar.installation_domain(settings)
    publish: list[CheckDate] = []
    cancel: list[CheckDate] = []
    written: dict[int, Announced] = {}
    labels: list[str] = []
    changes: list[str] = []

    def title(c: Contact) -> str:
        return get_protocol(c.injury).step(c.step_id).title

    def event(c: Contact, at: datetime, sequence: int) -> CheckDate:
        return CheckDate(icalendar.event_uid(c.idempotency_key, domain), title(c), at, sequence)

    timed = [(c, expected[c.id].at) for c in listed if c.id in expected and expected[c.id].at is not None]
    for contact, at in sorted(timed, key=lambda pair: (pair[1], pair[0].id or 0)):
        if at is None or contact.id is None:  # pragma: no cover - filtered above
            continue
        before = shown.get(contact.id)
        sequence = 0 if before is None else before.sequence + int(_moved(before.starts_at, at))
        publish.append(event(contact, at, sequence))
        written[contact.id] = Announced(at, sequence)
        labels.append(f"{_local_label(at, patient.timezone)} — {title(contact)}")
        if before is not None and sequence > before.sequence:
            changes.append(f"{title(contact)}: moved to {_local_label(at, patient.timezone)}")
    contacts = {c.id: c for c in every}
    for cid, before in sorted(shown.items(), key=lambda item: (item[1].starts_at or now, item[0])):
        earlier = contacts.get(cid)
        if cid in written or before.starts_at is None or earlier is None:
            continue
        if earlier.status == ContactStatus.PLANNED.value and cid in expected:
            at, why = expected[cid].at, expected[cid].not_sent
        elif earlier.status == ContactStatus.SKIPPED.value:
            at, why = None, ""
        else:
            continue  # sent, answered or expired: the event is in the past
        if at is None:
            cancel.append(event(earlier, before.starts_at, before.sequence + 1))
            written[cid] = Announced(None, before.sequence + 1)
            was = _local_label(before.starts_at, patient.timezone)
            changes.append(f"{title(earlier)} ({was}): will not be sent{_NOT_SENT.get(why, '')}")
        elif _moved(before.starts_at, at):
            publish.append(event(earlier, at, before.sequence + 1))
            written[cid] = Announced(at, before.sequence + 1)
            changes.append(f"{title(earlier)}: moved to {_local_label(at, patient.timezone)}")
    organizer = clinic.email or settings.mail_from
    attachments = []
    if publish:
        ics = icalendar.follow_up_calendar(publish, clinic_name=clinic.name, organizer=organizer, now=now)
        attachments.append(Attachment(CALENDAR_FILE, "text/calendar", ics))
    if cancel:
        ics = icalendar.cancelled_calendar(cancel, clinic_name=clinic.name, organizer=organizer, now=now)
        attachments.append(Attachment(CANCELLED_FILE, "text/calendar", ics))
    if written and n.id is not None:
        icalendar.record_attached(db, n.id, written)
    return Calendar(labels, changes, attachments)


CALENDAR_FILE, CANCELLED_FILE = "follow-up-checks.ics", "cancelled-checks.ics"
_NOT_SENT = {
    planning.SUPERSEDED: " (your newer session has its own check-ins)",
    planning.WINDOW_CLOSES: " (it could not be sent in time)",
}


def _moved(before: datetime | None, at: datetime) -> bool:
    return before is None or abs(at - before) >= MOVED_BY


def _survey(
    db: Session, n: Notification, patient: Patient, clinic: Clinic, *, now: datetime, settings: Settings
) -> Decision:
    contact = db.get(Contact, n.contact_id) if n.contact_id else None
    if contact is None:
        return Skip("contact row is missing")
    step = get_protocol(contact.injury).step(contact.step_id)
    route = channels.sms_route(clinic, settings)
    choice = channels.choose(channels.for_message(step, n.sequence), patient, route=route)
    if choice.channel is None:
        return Skip(choice.reason)
    if contact.status == ContactStatus.ANSWERED.value:
        return Skip("answered already")
    if contact.status != ContactStatus.SENT.value or now >= contact.window_closes_at:
        return Skip("window closed")
    if n.sequence > 0:
        allowed = clock.next_allowed(now, patient.timezone, settings.quiet_hours_start, settings.quiet_hours_end)
        if allowed != now:
            return Defer(allowed) if allowed < contact.window_closes_at else Skip("window closes during quiet hours")
    survey_url = _survey_url(contact, patient, settings)
    if choice.channel == channels.SMS and route is not None:
        return _survey_sms(n, patient, clinic, step, survey_url, route)
    calendar = _calendar(db, n, patient, clinic, listed=[], now=now, settings=settings)
    ctx = {
        "first_name": patient.first_name,
        "clinic": {"name": clinic.name, "phone": clinic.phone, "email": clinic.email},
        "step_title": step.title,
        "questions": question_summary(step, contact.injury),
        "emergency_number": emergency_number(clinic),
        "safety": step.safety,
        "is_reminder": n.sequence > 0,
        "survey_url": survey_url,
        "closes_label": _local_label(contact.window_closes_at, patient.timezone),
        "unsubscribe_url": unsubscribe_url(patient, settings),
        "calendar_changes": calendar.changes,
    }
    email = render_email("survey", ctx)
    return Compose(patient.email or "", email, _headers(n, patient, settings), calendar.attachments)


def _survey_url(contact: Contact, patient: Patient, settings: Settings) -> str:
    """The signed link to the check-in's form (the same in an email and a text)."""
    secret = settings.secret_key.get_secret_value()
    token = make_token(_id(contact.id), patient.id or 0, contact.step_id, contact.window_closes_at, secret)
    return f"{settings.public_base_url.rstrip('/')}/s/{token}"


def _survey_sms(n: Notification, patient: Patient, clinic: Clinic, step: Step, survey_url: str, route: str) -> Decision:
    """A check-in by text: the clinic's name, the step's title, the link; for a step a reply of numbers
    answers (``sms_reply_questions``), how to reply. No name, injury, region or answer."""
    context = {
        "clinic_name": clinic.name,
        "step_title": step.title,
        "survey_url": survey_url,
        "is_reminder": n.sequence > 0,
        "reply": bool(step.sms_reply_questions),
        "aftercare_by_email": channels.refusal(channels.EMAIL, patient, route=None) is None,
    }
    try:
        text = sms_text.survey_text(context)
    except sms_text.TooLong as exc:
        return Skip(str(exc))
    return ComposeSms(patient.phone or "", text, route)


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
    a check-in or reminder until its answer window closes, a reply to a text for a day. None: no limit
    known."""
    if n.kind == aftercare.TEMPLATE:
        session = db.get(TreatmentSession, n.session_id) if n.session_id is not None else None
        if session is None:
            return None
        return session.completed_at + timedelta(hours=settings.aftercare_max_age_hours)
    if n.kind == SMS_REPLY:
        inbound = db.get(SmsInbound, n.sms_inbound_id) if n.sms_inbound_id is not None else None
        return inbound.received_at + REPLY_USEFUL_FOR if inbound is not None else None
    contact = db.get(Contact, n.contact_id) if n.contact_id is not None else None
    return contact.window_closes_at if contact is not None else None


def message_id(n: Notification, settings: Settings) -> str:
    """The Message-ID every attempt at this notification carries (stable, names no patient)."""
    domain = settings.mail_from.rpartition("@")[2] or "needlecare.local"
    return f"<notification.{n.id}.{n.idempotency_key.replace(':', '.')}@{domain}>"
