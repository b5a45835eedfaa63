"""One text message from a patient, handled in one transaction: stored, acted on, and its reply queued.

The message is stored once per provider message id (``sms_inbound.provider_message_id`` is unique: a repost is
ignored). Its sender is found by E.164 phone number. What it says (:mod:`needlecare.surveys.sms_replies`):

- STOP opts every patient with that number out of text messages (``patient.sms_opted_out_at``; the sender skips
  every later SMS), START clears it, HELP gets the clinic's name and phone and how to stop.
- An answer ("7 0") answers the one open check-in whose step takes a reply (``sms_reply_questions``), through
  :func:`needlecare.surveys.responses.record_answer` with ``channel="sms"``: stored, evaluated by the same rules as
  the web form, a case opened where a rule says so; the reply carries the same advice. A "1" (a warning sign,
  not said which) is the red-flag item ``warning_sign_by_text``, which rule L2 acts on.
- Nothing is guessed: a message not understood, a number shared by several patients, several open check-ins, or
  none that a reply can answer gets a reply with the link(s) or a short help, and stores no answer.

The reply text is stored on the message (``sms_inbound.reply_text``) and queued as one notification
(kind ``sms_reply``, key ``sms_reply:<inbound id>``) that the outbox sends as it is. A sender with no patient
record gets no reply. Replies hold no diagnosis, injury or answer; only the advice the answer led to.
"""

from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import AuditEvent, Clinic, Contact, ContactStatus, Notification, NotificationStatus, Patient
from models.sms import InboundAction, SmsInbound
from needlecare.core.rendering import emergency_number
from needlecare.core.settings import Settings
from needlecare.core.tokens import make_token
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import BY_TEXT, NONE_OF_THESE, InvalidAnswers, validate_sms_reply
from needlecare.safety import sla
from needlecare.safety.advice import advice_from
from needlecare.safety.clinic_config import config_of
from needlecare.surveys.responses import Answered, SurveyUnavailable, record_answer, survey_context
from needlecare.surveys.sms_replies import Keyword, NotUnderstood, ParsedReply, ReplyAnswer, parse_reply

SMS_REPLY = "sms_reply"
MAX_BODY = 1600
MAX_LINKS = 3
STOP_LINE = "Reply STOP to stop."
ACTOR = "sms:inbound"


class InboundRefused(ValueError):
    """A webhook post that cannot be stored; the message names the field and the fix (never its content)."""


@dataclass(frozen=True)
class InboundText:
    """A text message as the provider's webhook gives it."""

    provider_message_id: str
    from_phone: str
    to_phone: str | None
    body: str


@dataclass(frozen=True)
class Handled:
    inbound_id: int
    action: InboundAction
    duplicate: bool = False
    response_id: int | None = None
    case_id: int | None = None


def e164(raw: str, region: str) -> str | None:
    """``raw`` as an E.164 number (a number without '+' read in ``region``), or None when it is not one."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def checked(
    provider_message_id: object, from_phone: object, to_phone: object, body: object, region: str
) -> InboundText:
    """The webhook's fields checked, or :class:`InboundRefused` naming the first bad one."""
    if not isinstance(provider_message_id, str) or not 1 <= len(provider_message_id.strip()) <= 128:
        raise InboundRefused("id (MessageSid): the provider's message id is required, 1-128 characters")
    if not isinstance(from_phone, str) or not from_phone.strip():
        raise InboundRefused("from (From): the sender's phone number is required, e.g. +447700900123")
    sender = e164(from_phone, region)
    if sender is None:
        raise InboundRefused("from (From): not a phone number; send it in E.164 form, e.g. +447700900123")
    if not isinstance(body, str):
        raise InboundRefused("body (Body): the text of the message is required (it may be empty)")
    if len(body) > MAX_BODY:
        raise InboundRefused(f"body (Body): at most {MAX_BODY} characters")
    receiver = e164(to_phone, region) if isinstance(to_phone, str) and to_phone.strip() else None
    return InboundText(provider_message_id.strip(), sender, receiver, body)


def handle(db: Session, text: InboundText, *, settings: Settings, now: datetime) -> Handled:
    """Store ``text`` once, act on it and queue its reply (one transaction). A repost is ``duplicate``."""
    known = _known(db, text.provider_message_id)
    if known is not None:
        return known
    parsed = parse_reply(text.body)
    patients = list(db.exec(select(Patient).where(Patient.phone == text.from_phone).order_by(col(Patient.id))).all())
    try:
        inbound = _store(db, text, now)
        if not patients:
            inbound.action = InboundAction.UNKNOWN_SENDER.value
            db.add(inbound)
            db.commit()
            return Handled(_id(inbound.id), InboundAction.UNKNOWN_SENDER)
        if isinstance(parsed, Keyword):
            return _keyword(db, inbound, parsed, patients, now=now)
        if isinstance(parsed, ReplyAnswer):
            answerable = _open_contacts(db, patients, now, answerable_only=True)
            if len(patients) == 1 and len(answerable) == 1:
                return _answer(db, inbound, parsed, patients[0], answerable[0], settings=settings, now=now)
        return _not_answered(db, inbound, parsed, patients, settings=settings, now=now)
    except IntegrityError:  # the same provider message id was stored meanwhile by another request
        db.rollback()
        known = _known(db, text.provider_message_id)
        if known is None:
            raise
        return known


# ---- each kind of message ------------------------------------------------------------------------------


def _keyword(db: Session, inbound: SmsInbound, keyword: Keyword, patients: list[Patient], *, now: datetime) -> Handled:
    clinics = _clinics(db, patients)
    names = " / ".join(clinic.name for clinic in clinics)
    if keyword.kind == "stop":
        action, audit = InboundAction.STOP, "patient.sms_opted_out"
        reply = f"{names}: you will get no more text messages from us. Reply START to get them again."
        for patient in patients:
            patient.sms_opted_out_at = patient.sms_opted_out_at or now
    elif keyword.kind == "start":
        action, audit = InboundAction.START, "patient.sms_opted_in"
        reply = f"{names}: text messages are on again. Reply HELP for help. {STOP_LINE}"
        for patient in patients:
            patient.sms_opted_out_at = None
    else:
        action, audit = InboundAction.HELP, ""
        phones = "; ".join(f"{clinic.name} {clinic.phone}" for clinic in clinics if clinic.phone)
        reply = f"{names}: check-in texts after your treatment. " + (f"Questions: call {phones}. " if phones else "")
        reply += STOP_LINE
    for patient in patients:
        patient.updated_at = now
        db.add(patient)
        if audit:
            _audit(db, now, audit, "patient", _id(patient.id), {"sms_inbound_id": _id(inbound.id)})
    return _finish(db, inbound, action, reply, patients[-1], now=now)


def _answer(
    db: Session,
    inbound: SmsInbound,
    parsed: ReplyAnswer,
    patient: Patient,
    contact: Contact,
    *,
    settings: Settings,
    now: datetime,
) -> Handled:
    """Record the reply as the contact's answer; any refusal (validation, a lost race) becomes a reply with the
    link instead, stored from scratch (``record_answer`` rolled back what was flushed)."""
    context = survey_context(db, contact)
    data = {"soreness": parsed.soreness, "redflags": [BY_TEXT] if parsed.warning_sign else [NONE_OF_THESE]}
    try:
        answers = validate_sms_reply(
            data, protocol=context.protocol, step=context.step, regions_needled=context.regions_needled
        )
    except InvalidAnswers:
        return _not_answered(
            db, inbound, NotUnderstood("the check does not take this reply"), [patient], settings=settings, now=now
        )
    clinic = db.get(Clinic, patient.clinic_id)
    handled: list[Handled] = []

    def store_with_answer(answered: Answered) -> None:
        reply = _advice_text(answered, clinic, now)
        inbound.action = InboundAction.ANSWER.value
        inbound.contact_id = contact.id
        inbound.response_id = answered.response.id
        inbound.reply_text = reply
        db.add(inbound)
        _queue_reply(db, inbound, patient, now)
        handled.append(
            Handled(
                _id(inbound.id),
                InboundAction.ANSWER,
                response_id=answered.response.id,
                case_id=answered.outcome.case_id,
            )
        )

    text, patient_id = _as_text(inbound), _id(patient.id)
    try:
        record_answer(db, contact, answers, channel="sms", now=now, before_commit=store_with_answer)
    except SurveyUnavailable:  # answered or closed meanwhile: everything flushed was rolled back
        fresh = _store(db, text, now)
        return _not_answered(db, fresh, parsed, [db.get(Patient, patient_id) or patient], settings=settings, now=now)
    return handled[0]


def _not_answered(
    db: Session,
    inbound: SmsInbound,
    parsed: ParsedReply,
    patients: list[Patient],
    *,
    settings: Settings,
    now: datetime,
) -> Handled:
    """No answer stored: the link(s) of the open check-ins, or a short help when none is open."""
    clinics = _clinics(db, patients)
    clinic = clinics[0]
    names = " / ".join(c.name for c in clinics)
    opened = _open_contacts(db, patients, now, answerable_only=False)[:MAX_LINKS]
    action = InboundAction.UNPARSED if isinstance(parsed, NotUnderstood) else InboundAction.NO_OPEN_CHECK
    if isinstance(parsed, NotUnderstood):
        start = f"{names}: sorry, we could not read that reply."
    elif opened:
        start = f"{names}: we could not match your reply to one check-in, so it is not saved."
    else:
        start = f"{names}: no check-in is waiting for a reply, so it is not saved."
    parts = [start]
    if opened:
        links = " ".join(_survey_url(c, settings) for c in opened)
        parts.append(f"Please answer here: {links}")
        if len(opened) == 1 and len(patients) == 1 and _takes_reply(opened[0]):
            parts.append("Or reply with 2 numbers, e.g. 7 0.")
    elif clinic.phone:
        parts.append(f"Questions: call {clinic.phone}.")
    parts.append(_emergency_line(clinic))
    parts.append(STOP_LINE)
    return _finish(db, inbound, action, " ".join(parts), patients[-1], now=now)


# ---- pieces ----------------------------------------------------------------------------------------------


def _advice_text(answered: Answered, clinic: Clinic | None, now: datetime) -> str:
    """The reply to a stored answer: the rules' advice for the tier reached (as the web form shows it), the
    emergency number and the clinic's phone where the advice is urgent; else a thank-you."""
    name = clinic.name if clinic is not None else "Your clinic"
    open_now = clinic is not None and sla.is_open(now, config_of(clinic.config).opening_hours, clinic.timezone)
    advice = advice_from(answered.outcome.evaluation, saved=True, clinic_open=open_now)
    if advice is None:
        return f"{name}: thank you, your answers are saved. {STOP_LINE}"
    parts = [f"{name}: {advice.message}"]
    if advice.tier == "EMERGENCY" and clinic is not None and emergency_number(clinic):
        parts.append(f"Emergency number: {emergency_number(clinic)}.")
    if advice.urgent and clinic is not None and clinic.phone:
        parts.append(f"Clinic: {clinic.phone}.")
    parts.append(STOP_LINE)
    return " ".join(parts)


def _emergency_line(clinic: Clinic) -> str:
    number = emergency_number(clinic)
    where = f"call {number}" if number else "call your local emergency number"
    return f"If you have chest pain or trouble breathing, {where} now."


def _open_contacts(db: Session, patients: list[Patient], now: datetime, *, answerable_only: bool) -> list[Contact]:
    """The patients' check-ins sent and still open now (soonest to close first); ``answerable_only``: those whose
    step takes a reply by text."""
    rows = db.exec(
        select(Contact)
        .where(
            col(Contact.patient_id).in_([p.id for p in patients]),
            Contact.status == ContactStatus.SENT.value,
            col(Contact.window_opens_at) <= now,
            col(Contact.window_closes_at) > now,
        )
        .order_by(col(Contact.window_closes_at), col(Contact.id))
    ).all()
    return [c for c in rows if _takes_reply(c)] if answerable_only else list(rows)


def _takes_reply(contact: Contact) -> bool:
    try:
        return bool(get_protocol(contact.injury).step(contact.step_id).sms_reply_questions)
    except KeyError:  # the step is no longer in its protocol pack
        return False


def _survey_url(contact: Contact, settings: Settings) -> str:
    secret = settings.secret_key.get_secret_value()
    token = make_token(_id(contact.id), contact.patient_id, contact.step_id, contact.window_closes_at, secret)
    return f"{settings.public_base_url.rstrip('/')}/s/{token}"


def _clinics(db: Session, patients: list[Patient]) -> list[Clinic]:
    ids = list(dict.fromkeys(p.clinic_id for p in patients))
    found = {c.id: c for c in db.exec(select(Clinic).where(col(Clinic.id).in_(ids))).all()}
    return [found[i] for i in ids if i in found]


def _store(db: Session, text: InboundText, now: datetime) -> SmsInbound:
    inbound = SmsInbound(
        provider_message_id=text.provider_message_id,
        from_phone=text.from_phone,
        to_phone=text.to_phone,
        body=text.body,
        action=InboundAction.UNPARSED.value,
        received_at=now,
    )
    db.add(inbound)
    db.flush()  # the unique provider id is checked here, before anything else is written
    return inbound


def _as_text(inbound: SmsInbound) -> InboundText:
    return InboundText(inbound.provider_message_id, inbound.from_phone, inbound.to_phone, inbound.body)


def _finish(
    db: Session, inbound: SmsInbound, action: InboundAction, reply: str, patient: Patient, *, now: datetime
) -> Handled:
    inbound.action = action.value
    inbound.patient_id = patient.id
    inbound.reply_text = reply[:MAX_BODY]
    db.add(inbound)
    _queue_reply(db, inbound, patient, now)
    db.commit()
    return Handled(_id(inbound.id), action)


def _queue_reply(db: Session, inbound: SmsInbound, patient: Patient, now: datetime) -> None:
    inbound.patient_id = patient.id
    db.add(
        Notification(
            idempotency_key=f"{SMS_REPLY}:{inbound.id}",
            kind=SMS_REPLY,
            channel="sms",
            patient_id=_id(patient.id),
            sms_inbound_id=inbound.id,
            status=NotificationStatus.PENDING.value,
            due_at=now,
        )
    )
    _audit(
        db, now, "sms.received", "sms_inbound", _id(inbound.id), {"action": inbound.action, "patient_id": patient.id}
    )


def _known(db: Session, provider_message_id: str) -> Handled | None:
    row = db.exec(select(SmsInbound).where(SmsInbound.provider_message_id == provider_message_id)).first()
    if row is None:
        return None
    return Handled(_id(row.id), InboundAction(row.action), duplicate=True, response_id=row.response_id)


def _audit(db: Session, now: datetime, action: str, entity: str, entity_id: int, detail: dict[str, object]) -> None:
    db.add(AuditEvent(at=now, actor=ACTOR, action=action, entity=entity, entity_id=str(entity_id), detail=detail))


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - rows from the database always have ids
        raise RuntimeError("row has no id")
    return value
