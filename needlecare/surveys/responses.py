"""Answering a survey contact: find the contact a token opens, store its one answer, then emit.

Used by the survey page and the JSON answers API alike. Opting out (``Patient.opted_out_at``) stops
further follow-ups elsewhere, but never the answer to a survey already sent: nothing here looks at it.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import AuditEvent, Clinic, Contact, ContactStatus, Episode, Patient, SurveyResponse, TreatmentSession
from models.base import utcnow
from needlecare.core import events
from needlecare.core.catalogue import get_catalogue
from needlecare.core.rendering import emergency_number
from needlecare.core.tokens import TokenClaims
from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import SurveyAnswers
from needlecare.safety import escalation

SURVEY_ANSWERED = "needlecare.survey.answered"
_EVENT_NAMESPACE = uuid.UUID("0f3b5b8e-2f4c-4d0a-9d7e-7a1d3c5e9b21")

Reason = Literal["invalid", "expired", "answered", "closed"]
Channel = Literal["web", "api"]
_OPEN = (ContactStatus.PLANNED.value, ContactStatus.SENT.value)


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
    answered = db.exec(select(SurveyResponse.id).where(SurveyResponse.contact_id == contact.id)).first()
    if contact.status == ContactStatus.ANSWERED.value or answered is not None:
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
) -> Answered:
    """Store the one answer for ``contact``, evaluate the escalation rules on it, and open a case and queue
    its alert when needed — all in one transaction — then emit ``needlecare.survey.answered``.

    The contact is claimed with a conditional UPDATE (open status only), and ``survey_response.contact_id``
    is unique: of two concurrent submits exactly one is stored; the other gets ``SurveyUnavailable``.
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
        response = _response(contact, answers, channel=channel, now=now)
        db.add(response)
        db.flush()
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


def answered_event(response: SurveyResponse, *, case_id: int | None = None) -> events.AppEvent:
    """IDs only (and the tier reached); a stable event id so an exact duplicate emit can be dropped."""
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
    return events.AppEvent(
        event=SURVEY_ANSWERED,
        resource_id=f"needlecare.survey.{response_id}",
        payload=payload,
        id=uuid.uuid5(_EVENT_NAMESPACE, f"survey-answered:{response_id}"),
        labels={"needlecare.escalation": "case" if case_id is not None else "none"},
    )


def _response(contact: Contact, answers: SurveyAnswers, *, channel: Channel, now: datetime) -> SurveyResponse:
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
    )


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - rows from the database always have ids
        raise RuntimeError("row has no id")
    return value
