"""A synthetic patient answering a check-in the way the JSON answers API takes it: the signed link read with
``tokens.read_token``, ``surveys.load_contact``, ``surveys.survey_context``, ``answers.validate_answers`` and
``surveys.record_answer`` (channel ``api``), as of the moment the patient answers. ``record_answer`` evaluates
the escalation rules and opens a case, with its practitioner alert queued, when a rule calls for one."""

from datetime import datetime
from typing import Literal

from sqlmodel import Session

from models import Contact
from needlecare.core.tokens import TokenError, make_token, read_token
from needlecare.demo.trajectories import PlannedAnswer
from needlecare.followup.questions import InvalidAnswers, SurveyAnswers, validate_answers
from needlecare.surveys.responses import (
    Answered,
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
    db: Session, contact_id: int, plan: PlannedAnswer, *, at: datetime, secret: str
) -> Answered | Unanswered:
    """Send ``plan``'s answers to the check ``contact_id`` as of ``at``; what was stored, or why nothing was."""
    contact = db.get(Contact, contact_id)
    if contact is None:  # pragma: no cover - contacts are never deleted
        return "missing"
    token = make_token(contact_id, contact.patient_id, contact.step_id, contact.window_closes_at, secret)
    try:
        claims = read_token(token, secret, at)
        context = survey_context(db, load_contact(db, claims, now=at))
    except (TokenError, SurveyUnavailable):
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


def store_answer(db: Session, context: SurveyContext, answers: SurveyAnswers, *, now: datetime) -> Answered:
    """The one place the demo stores an answer: the JSON answers API's call (channel "api"), which also
    evaluates the escalation rules and opens a case (with its practitioner alert queued) when one is needed."""
    return record_answer(db, context.contact, answers, channel="api", now=now)
