"""Answering a survey contact: find the contact a token opens, store its one answer, then emit.

Used by the survey page and the JSON answers API alike. Opting out (``Patient.opted_out_at``) stops
further follow-ups elsewhere, but never the answer to a survey already sent: nothing here looks at it.

A form refused for errors elsewhere that ticks a red flag is not lost: :func:`record_partial` stores its
red-flag part (the ticked warning signs and the other rule inputs that are valid on their own, see
:data:`PARTIAL_FIELDS`) in the contact's one ``survey_response`` row, evaluates the rules on it and opens a case
as a whole answer would. The contact stays open: a response row of a contact that is not ``answered`` is a
partial answer. The complete answer (:func:`record_answer`) then fills in that same row, is evaluated as usual,
and opens a case only for rules the partial's case does not already have (``needlecare.safety.escalation``).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import AuditEvent, Clinic, Contact, ContactStatus, Episode, Patient, SurveyResponse, TreatmentSession
from models.base import utcnow
from needlecare.core import events
from needlecare.core.catalogue import get_catalogue
from needlecare.core.rendering import emergency_number
from needlecare.core.tokens import TokenClaims
from needlecare.followup.protocol_schema import QUESTION_IDS, Protocol, Step
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import (
    NONE_OF_THESE,
    InvalidAnswers,
    SurveyAnswers,
    lenient_answers,
    redflag_options,
    validate_answers,
)
from needlecare.safety import escalation
from needlecare.safety.rules.evaluation import EvaluationInput

SURVEY_ANSWERED = "needlecare.survey.answered"
_EVENT_NAMESPACE = uuid.UUID("0f3b5b8e-2f4c-4d0a-9d7e-7a1d3c5e9b21")

Reason = Literal["invalid", "expired", "answered", "closed"]
Channel = Literal["web", "api", "sms"]  # sms: a reply by text message (needlecare.surveys.sms_inbound)
_OPEN = (ContactStatus.PLANNED.value, ContactStatus.SENT.value)
# Besides the red flags, what a partial answer keeps: the questions the escalation rules read, when valid on
# their own. Not nprs_usual and groc15: outcome measures, read by the reports from every response row.
PARTIAL_FIELDS: frozenset[str] = (frozenset(QUESTION_IDS) & frozenset(EvaluationInput.model_fields)) - {
    "redflags",
    "nprs_usual",
    "groc15",
}


@dataclass(frozen=True)
class Answered:
    """A stored answer and what its rule evaluation led to."""

    response: SurveyResponse
    outcome: escalation.Outcome


class SurveyUnavailable(Exception):
    """The token does not lead to a survey that can be answered now; ``reason`` says why."""

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class SurveyContext:
    """What the form and the validator need beside the contact.

    Of the patient only the first name is here (the form greets by it); the clinic's phone number is shown
    next to urgent advice, and its emergency number wherever the page says to call one. None of them appears
    on pages for unusable links.
    """

    contact: Contact
    protocol: Protocol
    step: Step
    first_name: str
    clinic_id: str
    clinic_phone: str | None
    emergency_number: str | None
    regions_needled: list[str]
    trunk_needled: bool
    previous_activities: list[str]


def load_contact(db: Session, claims: TokenClaims, *, now: datetime | None = None) -> Contact:
    """The contact the token was made for, if it can still be answered; raises ``SurveyUnavailable``."""
    now = now or utcnow()
    contact = db.get(Contact, claims.contact_id)
    if contact is None or contact.patient_id != claims.patient_id or contact.step_id != claims.step_id:
        raise SurveyUnavailable("invalid")
    _check_open(db, contact, now)
    return contact


def _check_open(db: Session, contact: Contact, now: datetime) -> None:
    """The answer is marked on the contact, in the transaction that stores it; a response row of a contact that
    is not answered is a partial answer (:func:`record_partial`) and leaves the check open."""
    if contact.status == ContactStatus.ANSWERED.value:
        raise SurveyUnavailable("answered")
    if contact.status not in _OPEN or now >= contact.window_closes_at:
        raise SurveyUnavailable("closed")
    if contact.status == ContactStatus.PLANNED.value and now < contact.window_opens_at:
        raise SurveyUnavailable("closed")


def survey_context(db: Session, contact: Contact) -> SurveyContext:
    """Protocol step, regions needled, first name and last PSFS activities for one contact."""
    protocol = get_protocol(contact.injury)
    step = protocol.step(contact.step_id)
    patient = db.get(Patient, contact.patient_id)
    clinic = db.get(Clinic, patient.clinic_id) if patient is not None else None
    regions = _regions_needled(db, contact)
    return SurveyContext(
        contact=contact,
        protocol=protocol,
        step=step,
        first_name=patient.first_name if patient is not None else "",
        clinic_id=patient.clinic_id if patient is not None else "",
        clinic_phone=clinic.phone if clinic is not None else None,
        emergency_number=emergency_number(clinic) if clinic is not None else None,
        regions_needled=regions,
        trunk_needled=get_catalogue().is_trunk(regions),
        previous_activities=previous_activities(db, contact),
    )


def _regions_needled(db: Session, contact: Contact) -> list[str]:
    session = db.get(TreatmentSession, contact.session_id) if contact.session_id is not None else None
    if session is None:  # an episode survey: the episode's latest session
        session = db.exec(
            select(TreatmentSession)
            .where(TreatmentSession.episode_id == contact.episode_id)
            .order_by(col(TreatmentSession.completed_at).desc())
        ).first()
    return list(session.regions_needled) if session is not None else []


def previous_activities(db: Session, contact: Contact) -> list[str]:
    """The activities of this patient's latest PSFS answer in the same episode (re-rate the same ones)."""
    psfs = db.exec(
        select(SurveyResponse.psfs)
        .where(
            SurveyResponse.patient_id == contact.patient_id,
            SurveyResponse.episode_id == contact.episode_id,
            col(SurveyResponse.psfs).is_not(None),
        )
        .order_by(col(SurveyResponse.submitted_at).desc(), col(SurveyResponse.id).desc())
    ).first()
    if not psfs:
        return []
    return [str(item["activity"]) for item in psfs if isinstance(item, dict) and item.get("activity")]


def record_answer(
    db: Session,
    contact: Contact,
    answers: SurveyAnswers,
    *,
    channel: Channel,
    now: datetime,
    before_commit: Callable[["Answered"], None] | None = None,
) -> Answered:
    """Store the one answer for ``contact``, evaluate the escalation rules on it, and open a case and queue
    its alert when needed — all in one transaction — then emit ``needlecare.survey.answered``.

    ``before_commit`` is called with the stored answer and its outcome inside that transaction, to store what
    belongs with it (the text message an SMS answer came in and its reply); if it raises, nothing is stored.

    The contact is claimed with a conditional UPDATE (open status only), and ``survey_response.contact_id``
    is unique: of two concurrent submits exactly one is stored; the other gets ``SurveyUnavailable``.
    A partial answer stored before (:func:`record_partial`) is filled in: the same row, all of it replaced.
    """
    contact_id = _id(contact.id)
    try:
        claimed = db.exec(
            update(Contact)
            .where(col(Contact.id) == contact_id, col(Contact.status).in_(_OPEN))
            .where(or_(col(Contact.status) == ContactStatus.SENT.value, col(Contact.window_opens_at) <= now))
            .values(status=ContactStatus.ANSWERED.value, answered_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            db.rollback()
            db.refresh(contact)
            _check_open(db, contact, now)
            raise SurveyUnavailable("closed")  # pragma: no cover - _check_open raised already
        response = _store_row(db, contact, answers, channel=channel, now=now)
        response_id = _id(response.id)
        clinic_id = db.exec(select(Episode.clinic_id).where(Episode.id == contact.episode_id)).one()
        outcome = escalation.evaluate_answer(
            db, contact, answers, now=now, response_id=response_id, clinic_id=clinic_id
        )
        response.advice_tier = outcome.evaluation.highest_tier
        db.add(response)
        db.add(
            AuditEvent(
                at=now,
                actor=f"survey:{channel}",
                action="survey.answered",
                entity="survey_response",
                entity_id=str(response_id),
                detail={
                    "contact_id": contact_id,
                    "patient_id": contact.patient_id,
                    "session_id": contact.session_id,
                    "advice_tier": response.advice_tier,
                    "evaluation_id": outcome.evaluation_id,
                    "case_id": outcome.case_id,
                },
            )
        )
        if before_commit is not None:
            before_commit(Answered(response, outcome))
        db.commit()
    except IntegrityError:
        db.rollback()
        raise SurveyUnavailable("answered") from None
    except BaseException:
        db.rollback()
        raise
    db.refresh(contact)
    events.emit(answered_event(response, case_id=outcome.case_id))
    return Answered(response, outcome)


def partial_answers(data: dict[str, Any], context: SurveyContext, errors: dict[str, str]) -> SurveyAnswers | None:
    """The red-flag part of answers refused as a whole (``errors``), or None when no red flag is ticked.

    The ticked items of this patient's checklist, with their follow-up ticks when the validator takes them (a
    "None of these" ticked beside them is dropped: a ticked warning sign is never ignored; so are items not on
    the checklist), and each of :data:`PARTIAL_FIELDS` this step asks that the validator did not refuse,
    validated on its own.
    """
    step = context.step
    ticked = [flag for flag in lenient_answers(data).redflags if flag != NONE_OF_THESE]
    allowed = redflag_options(context.contact.injury, context.regions_needled)
    checklist = [flag for flag in ticked if flag in allowed]
    if "redflags" not in step.questions or not checklist:
        return None
    alone = [q for q in step.questions if q in PARTIAL_FIELDS and q not in errors and data.get(q) is not None]
    part = step.model_copy(update={"questions": ["redflags", *alone]})
    for flags in (ticked, checklist) if ticked != checklist else (checklist,):
        try:
            return validate_answers(
                {"redflags": flags, **{q: data[q] for q in alone}},
                protocol=context.protocol,
                step=part,
                regions_needled=context.regions_needled,
            )
        except InvalidAnswers:
            continue
    return None


def record_partial(
    db: Session,
    contact: Contact,
    answers: SurveyAnswers,
    *,
    channel: Channel,
    now: datetime,
) -> Answered:
    """Store the red-flag part of a refused form (:func:`partial_answers`) as the contact's response row,
    evaluate the rules on it (``kind="partial"``) and open a case and queue its alert when needed — in one
    transaction — then emit ``needlecare.survey.answered`` (with ``partial_evaluation_id``).

    The contact stays open for the complete answer. Its row is locked first (a no-op UPDATE, open status only),
    so a concurrent complete answer either waits for this one and fills in its row, or was stored before and
    this raises ``SurveyUnavailable``. A second partial answer replaces the first one's row; its evaluation
    opens a case only for rules not already on one.
    """
    contact_id = _id(contact.id)
    try:
        held = db.exec(
            update(Contact)
            .where(col(Contact.id) == contact_id, col(Contact.status).in_(_OPEN))
            .where(or_(col(Contact.status) == ContactStatus.SENT.value, col(Contact.window_opens_at) <= now))
            .values(status=col(Contact.status))
            .execution_options(synchronize_session=False)
        )
        if held.rowcount != 1:
            db.rollback()
            db.refresh(contact)
            _check_open(db, contact, now)
            raise SurveyUnavailable("closed")
        response = _store_row(db, contact, answers, channel=channel, now=now)
        response_id = _id(response.id)
        clinic_id = db.exec(select(Episode.clinic_id).where(Episode.id == contact.episode_id)).one()
        outcome = escalation.evaluate_answer(
            db, contact, answers, now=now, response_id=response_id, clinic_id=clinic_id, kind="partial"
        )
        response.advice_tier = outcome.evaluation.highest_tier
        db.add(response)
        db.add(
            AuditEvent(
                at=now,
                actor=f"survey:{channel}",
                action="survey.partial",
                entity="survey_response",
                entity_id=str(response_id),
                detail={
                    "contact_id": contact_id,
                    "patient_id": contact.patient_id,
                    "session_id": contact.session_id,
                    "advice_tier": response.advice_tier,
                    "evaluation_id": outcome.evaluation_id,
                    "case_id": outcome.case_id,
                },
            )
        )
        db.commit()
    except IntegrityError:
        db.rollback()
        raise SurveyUnavailable("answered") from None
    except BaseException:
        db.rollback()
        raise
    db.refresh(contact)
    events.emit(answered_event(response, case_id=outcome.case_id, partial_evaluation_id=outcome.evaluation_id))
    return Answered(response, outcome)


def _store_row(
    db: Session, contact: Contact, answers: SurveyAnswers, *, channel: Channel, now: datetime
) -> SurveyResponse:
    """Insert the contact's response row, or replace every answer in the one stored before (a partial)."""
    fresh = _response(contact, answers, channel=channel, now=now)
    row = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact.id)).first()
    if row is None:
        row = fresh
    else:
        for name in SurveyResponse.model_fields:
            if name != "id":
                setattr(row, name, getattr(fresh, name))
    db.add(row)
    db.flush()
    return row


def answered_event(
    response: SurveyResponse, *, case_id: int | None = None, partial_evaluation_id: int | None = None
) -> events.AppEvent:
    """IDs only (and the tier reached); a stable event id so an exact duplicate emit can be dropped.

    ``partial_evaluation_id``: the event of a partial answer (one per evaluation; the complete answer has its own).
    """
    response_id = _id(response.id)
    payload: dict[str, int | str] = {
        "response_id": response_id,
        "contact_id": response.contact_id,
        "patient_id": response.patient_id,
        "episode_id": response.episode_id,
    }
    if response.session_id is not None:
        payload["session_id"] = response.session_id
    if case_id is not None:
        payload["case_id"] = case_id
    if response.advice_tier is not None:
        payload["tier"] = response.advice_tier
    if partial_evaluation_id is not None:
        payload["partial_evaluation_id"] = partial_evaluation_id
    return events.AppEvent(
        event=SURVEY_ANSWERED,
        resource_id=f"needlecare.survey.{response_id}",
        payload=payload,
        id=uuid.uuid5(
            _EVENT_NAMESPACE,
            f"survey-answered:{response_id}"
            if partial_evaluation_id is None
            else f"survey-partial:{partial_evaluation_id}",
        ),
        labels={"needlecare.escalation": "case" if case_id is not None else "none"},
    )


def _response(contact: Contact, answers: SurveyAnswers, *, channel: Channel, now: datetime) -> SurveyResponse:
    """The row to store; each 0-10 score with the recall period it was asked with (``*_recall``)."""
    recall = answers.recalls()
    return SurveyResponse(
        contact_id=_id(contact.id),
        patient_id=contact.patient_id,
        session_id=contact.session_id,
        episode_id=contact.episode_id,
        injury=contact.injury,
        step_id=contact.step_id,
        channel=channel,
        submitted_at=now,
        nprs_usual=answers.nprs_usual,
        nprs_worst=answers.nprs_worst,
        soreness=answers.soreness,
        bruise=answers.bruise,
        groc15=answers.groc15,
        rom_measure=answers.rom.measure if answers.rom else None,
        rom_value=answers.rom.value if answers.rom else None,
        psfs=[item.model_dump() for item in answers.psfs] if answers.psfs is not None else None,
        redflags=list(answers.redflags),
        free_text=answers.free_text,
        fainted=answers.fainted,
        ran=answers.ran,
        run_pain=answers.run_pain,
        nprs_usual_recall=recall["nprs_usual_recall"],
        nprs_worst_recall=recall["nprs_worst_recall"],
        soreness_recall=recall["soreness_recall"],
        run_pain_recall=recall["run_pain_recall"],
    )


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - rows from the database always have ids
        raise RuntimeError("row has no id")
    return value
