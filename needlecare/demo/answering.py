"""A synthetic patient answering a check-in the way the JSON answers API takes it: the signed link read with
``tokens.read_token``, ``surveys.load_contact``, ``surveys.survey_context``, ``answers.validate_answers`` and
``surveys.record_answer`` (channel ``api``), as of the moment the patient answers. ``record_answer`` evaluates
the escalation rules and opens a case, with its practitioner alert queued, when a rule calls for one.

Or by a text reply (channel ``sms``): where the step lists ``sms_reply_questions``, an SMS reminder of the check was
due before the answer, the answer reports no red flag and the patient's draw says so (``figures.SMS_REPLY_SHARE``),
the answer holds only the questions a reply answers (e.g. soreness and "no warning sign")."""

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from models import Contact, ContactStatus, Notification, Patient, TreatmentSession
from needlecare.core.tokens import TokenError, make_token, read_token
from needlecare.demo.figures import SMS_REPLY_SHARE
from needlecare.demo.trajectories import PlannedAnswer
from needlecare.followup.questions import InvalidAnswers, SurveyAnswers, validate_answers
from needlecare.surveys.responses import (
    Answered,
    Channel,
    SurveyContext,
    SurveyUnavailable,
    load_contact,
    record_answer,
    survey_context,
)

# Why a planned answer was not recorded: the link no longer opened or the check closed meanwhile ("closed"),
# the validator refused the planned answers ("refused"), or there is no such contact ("missing").
Unanswered = Literal["closed", "refused", "missing"]


def answer_check(
    db: Session, contact_id: int, plan: PlannedAnswer, *, at: datetime, secret: str, reply_draw: float = 1.0
) -> Answered | Unanswered:
    """Send ``plan``'s answers to the check ``contact_id`` as of ``at``; what was stored, or why nothing was.
    ``reply_draw`` below ``SMS_REPLY_SHARE``: the patient replies by text where a reply can answer (module doc)."""
    contact = db.get(Contact, contact_id)
    if contact is None:  # pragma: no cover - contacts are never deleted
        return "missing"
    token = make_token(contact_id, contact.patient_id, contact.step_id, contact.window_closes_at, secret)
    try:
        claims = read_token(token, secret, at)
        context = survey_context(db, load_contact(db, claims, now=at))
    except (TokenError, SurveyUnavailable):
        return "closed"
    reply = _reply_questions(db, context, plan, at, reply_draw)
    if reply is not None:
        body = {q: plan.answers[q] for q in reply if q in plan.answers}
        try:
            return store_answer(db, context, SurveyAnswers.model_validate(body), now=at, channel="sms")
        except SurveyUnavailable:
            return "closed"
    try:
        answers = validate_answers(
            dict(plan.answers),
            protocol=context.protocol,
            step=context.step,
            regions_needled=context.regions_needled,
            previous_activities=context.previous_activities or None,
        )
    except InvalidAnswers:
        return "refused"
    try:
        return store_answer(db, context, answers, now=at)
    except SurveyUnavailable:
        return "closed"


def _reply_questions(
    db: Session, context: SurveyContext, plan: PlannedAnswer, at: datetime, draw: float
) -> list[str] | None:
    questions = list(context.step.sms_reply_questions)
    if not questions or plan.red_flag or draw >= SMS_REPLY_SHARE:
        return None
    texted = db.exec(
        select(Notification.id).where(
            Notification.contact_id == context.contact.id,
            col(Notification.sequence) >= 1,
            Notification.channel == "sms",
            col(Notification.due_at) <= at,
        )
    ).first()
    return questions if texted is not None else None


def store_answer(
    db: Session, context: SurveyContext, answers: SurveyAnswers, *, now: datetime, channel: Channel = "api"
) -> Answered:
    """The one place the demo stores an answer: the call of the JSON answers API (channel "api") or of a text
    reply ("sms"), which also evaluates the escalation rules and opens a case (with its practitioner alert
    queued) when one is needed."""
    return record_answer(db, context.contact, answers, channel=channel, now=now)


def select_opened(clinic_id: str) -> Any:
    """Opened (sent) contacts of the clinic's patients, with the external ids that find their plan."""
    return (
        sa_select(
            col(Contact.id),
            col(Contact.patient_id),
            col(Contact.step_id),
            col(Contact.sent_at),
            col(Contact.window_closes_at),
            col(Patient.external_id),
            col(TreatmentSession.external_session_id),
        )
        .join(Patient, col(Patient.id) == Contact.patient_id)
        .outerjoin(TreatmentSession, col(TreatmentSession.id) == Contact.session_id)
        .where(col(Patient.clinic_id) == clinic_id, col(Contact.status) == ContactStatus.SENT.value)
        .order_by(col(Contact.id))
    )
