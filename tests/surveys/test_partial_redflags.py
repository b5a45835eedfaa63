"""Partial answers: the red-flag part of a refused form, stored with its evaluation and case, and how the complete
answer relates to it (the same row; a case only for rules not already on one). On SQLite and PostgreSQL."""

from typing import Any, TypeVar

import pytest
from sqlmodel import Session, col, select

from models import Alert, CaseRule, Clinic, Contact, EscalationCase, RuleEvaluation, SurveyResponse
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.events import AppEvent
from needlecare.core.tokens import TokenClaims
from needlecare.followup.questions import InvalidAnswers, SurveyAnswers, validate_answers
from needlecare.surveys.responses import (
    PARTIAL_FIELDS,
    SurveyContext,
    SurveyUnavailable,
    load_contact,
    partial_answers,
    record_answer,
    record_partial,
    survey_context,
)
from tests.records import make_contact, make_session

T = TypeVar("T")
OK_24H = SurveyAnswers(soreness=3, bruise="none", redflags=["none"], fainted=False)


def rows(db: Session, model: type[T]) -> list[T]:
    db.expire_all()
    return list(db.exec(select(model).order_by(col(model.id))).all())  # type: ignore[attr-defined]


def context_for(db: Session, step_id: str) -> SurveyContext:
    return survey_context(db, make_contact(db, make_session(db), step_id))


def refused(data: dict[str, Any], context: SurveyContext) -> dict[str, str]:
    with pytest.raises(InvalidAnswers) as caught:
        validate_answers(data, protocol=context.protocol, step=context.step, regions_needled=context.regions_needled)
    return caught.value.errors


def case_rules(db: Session) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for rule in rows(db, CaseRule):
        found.setdefault(rule.case_id, {})[rule.rule_id] = rule.tier
    return found


# ---- what a partial answer keeps ----------------------------------------------------------------------


def test_partial_fields_are_the_rule_inputs_that_are_not_outcome_measures() -> None:
    assert {"nprs_worst", "soreness", "bruise", "fainted", "free_text"} <= PARTIAL_FIELDS
    assert not PARTIAL_FIELDS & {"nprs_usual", "groc15", "psfs", "rom", "ran", "run_pain", "redflags"}


def test_the_ticked_flags_and_the_answers_valid_on_their_own_are_kept(db: Session, clinic: Clinic) -> None:
    context = context_for(db, "check_72h")
    data = {
        "redflags": ["pus", "none", "not_a_flag", "pain_hopping"],  # pain_hopping: bone-stress injuries only
        "nprs_usual": "4",
        "nprs_worst": "12",
        "soreness": "5",
        "groc15": "2",
        "ran": "maybe",
    }
    partial = partial_answers(data, context, refused(data, context))
    assert partial is not None
    assert partial.redflags == ["pus"], "a warning sign beside 'None of these' counts; unknown items do not"
    assert partial.soreness == 5 and partial.nprs_worst is None, "the refused worst pain is left out"
    assert (partial.nprs_usual, partial.groc15, partial.ran) == (None, None, None), "outcome answers never"


def test_the_nerve_follow_ups_are_kept_with_their_flag(db: Session, clinic: Clinic) -> None:
    context = context_for(db, "check_24h")
    data = {"redflags": ["new_weakness", "nerve_cannot_walk"], "soreness": "12"}
    partial = partial_answers(data, context, refused(data, context))
    assert partial is not None and partial.redflags == ["new_weakness", "nerve_cannot_walk"]
    stored = record_partial(db, context.contact, partial, channel="web", now=utcnow())
    assert stored.outcome.evaluation.tier_of("R6") == "EMERGENCY", "cannot walk: the emergency branch of R6"
    # A follow-up ticked without its flag is refused; the warning signs beside it are still kept.
    alone = {"redflags": ["chest_pain", "nerve_getting_worse"]}
    kept = partial_answers(alone, context, refused(alone, context))
    assert kept is not None and kept.redflags == ["chest_pain"]


@pytest.mark.parametrize(
    "data",
    [{"soreness": "9", "bruise": "large"}, {"redflags": ["none"], "soreness": "x"}, {"redflags": ["bogus"]}],
)
def test_no_ticked_warning_sign_means_no_partial(db: Session, clinic: Clinic, data: dict[str, Any]) -> None:
    context = context_for(db, "check_24h")
    assert partial_answers(data, context, refused(data, context)) is None


# ---- storing it, and the complete answer after it -----------------------------------------------------


def test_a_partial_is_stored_evaluated_and_alerted_and_the_check_stays_open(
    db: Session, clinic: Clinic, emitted: list[AppEvent]
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    stored = record_partial(db, contact, SurveyAnswers(redflags=["pus"]), channel="api", now=utcnow())
    [row] = rows(db, SurveyResponse)
    assert row.id == stored.response.id and row.redflags == ["pus"] and row.advice_tier == "SAME_DAY"
    assert db.get(Contact, contact.id).status == "sent"  # type: ignore[union-attr]
    [evaluation] = rows(db, RuleEvaluation)
    assert (evaluation.kind, evaluation.response_id, evaluation.id) == ("partial", row.id, stored.outcome.evaluation_id)
    [case] = rows(db, EscalationCase)
    assert case.id == stored.outcome.case_id and case.idempotency_key == f"response:{row.id}"
    [alert] = rows(db, Alert)
    assert (alert.case_id, alert.status) == (case.id, "pending")
    event = emitted[-1]
    assert event.labels == {"needlecare.escalation": "case"}
    assert event.payload["partial_evaluation_id"] == evaluation.id and event.payload["case_id"] == case.id
    # The contact still opens: the link is not "answered".
    claims = TokenClaims(contact.id or 0, contact.patient_id, "check_24h", contact.window_closes_at)
    assert load_contact(db, claims).id == contact.id


def test_the_same_flags_again_open_no_second_case(db: Session, clinic: Clinic, emitted: list[AppEvent]) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    first = record_partial(db, contact, SurveyAnswers(redflags=["pus"], bruise="small"), channel="web", now=utcnow())
    again = record_partial(db, contact, SurveyAnswers(redflags=["pus"]), channel="web", now=utcnow())
    [row] = rows(db, SurveyResponse)
    assert row.bruise is None, "the latest partial replaces the row; its earlier answer stays in its evaluation"
    assert [e.kind for e in rows(db, RuleEvaluation)] == ["partial", "partial"]
    assert again.outcome.case_id == first.outcome.case_id and len(rows(db, EscalationCase)) == 1
    assert len(rows(db, Alert)) == 1
    complete = record_answer(
        db, contact, SurveyAnswers(**{**OK_24H.model_dump(), "redflags": ["pus"]}), channel="web", now=utcnow()
    )
    assert complete.response.id == row.id and complete.outcome.case_id == first.outcome.case_id
    assert len(rows(db, EscalationCase)) == 1 and len(rows(db, Alert)) == 1
    assert len({event.id for event in emitted[-3:]}) == 3, "one event per evaluation"


def test_what_the_complete_answer_adds_is_a_case_of_its_own(db: Session, clinic: Clinic) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    partial = record_partial(db, contact, SurveyAnswers(redflags=["pus"]), channel="web", now=utcnow())
    answers = SurveyAnswers(soreness=8, bruise="large", redflags=["pus"], fainted=False, free_text="feel faint")
    complete = record_answer(db, contact, answers, channel="web", now=utcnow())
    first, second = rows(db, EscalationCase)
    assert first.id == partial.outcome.case_id and second.id == complete.outcome.case_id
    assert second.idempotency_key == f"response:{complete.response.id}:{complete.outcome.evaluation_id}"
    assert first.response_id == second.response_id == complete.response.id
    by_case = case_rules(db)
    assert set(by_case[first.id or 0]) == {"R5"}
    assert set(by_case[second.id or 0]) == {"R7", "R10", "R16"}, "only the rules the first case does not have"
    assert [alert.case_id for alert in rows(db, Alert)] == [first.id, second.id]


def test_the_same_rule_at_a_higher_tier_is_alerted_again(db: Session, clinic: Clinic) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    record_partial(db, contact, SurveyAnswers(redflags=["fainted_after_leaving"]), channel="web", now=utcnow())
    answers = SurveyAnswers(soreness=1, bruise="none", redflags=["fainted_after_leaving", "palpitations"], fainted=True)
    complete = record_answer(db, contact, answers, channel="web", now=utcnow())
    first, second = rows(db, EscalationCase)
    by_case = case_rules(db)
    assert by_case[first.id or 0] == {"R4": "SAME_DAY"}
    assert by_case[second.id or 0]["R4"] == "EMERGENCY" and second.tier == "EMERGENCY"
    assert complete.outcome.case_id == second.id


def test_a_quiet_complete_answer_after_a_partial_keeps_the_partials_case(db: Session, clinic: Clinic) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    partial = record_partial(db, contact, SurveyAnswers(redflags=["chest_pain"]), channel="web", now=utcnow())
    complete = record_answer(db, contact, OK_24H, channel="web", now=utcnow())
    assert complete.outcome.evaluation.highest_tier is None, "the patient unticked the flag"
    assert complete.outcome.case_id is None
    [case] = rows(db, EscalationCase)
    assert case.id == partial.outcome.case_id and case.status == "open", "what was alerted is not withdrawn"
    [row] = rows(db, SurveyResponse)
    assert row.redflags == ["none"] and row.advice_tier is None


# ---- races between a partial and the complete answer -------------------------------------------------


def test_a_partial_loaded_before_the_complete_answer_is_refused(db: Session, db_url: str, clinic: Clinic) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    claims = TokenClaims(contact.id or 0, contact.patient_id, "check_24h", contact.window_closes_at)
    engine = database.get_engine(db_url)
    with Session(engine, expire_on_commit=False) as one, Session(engine, expire_on_commit=False) as two:
        complete, late = load_contact(one, claims), load_contact(two, claims)
        record_answer(one, complete, OK_24H, channel="api", now=utcnow())
        with pytest.raises(SurveyUnavailable) as lost:
            record_partial(two, late, SurveyAnswers(redflags=["chest_pain"]), channel="web", now=utcnow())
    assert lost.value.reason == "answered"
    [row] = rows(db, SurveyResponse)
    assert row.redflags == ["none"] and rows(db, EscalationCase) == []


def test_a_complete_answer_loaded_before_a_partial_fills_in_its_row(db: Session, db_url: str, clinic: Clinic) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    claims = TokenClaims(contact.id or 0, contact.patient_id, "check_24h", contact.window_closes_at)
    engine = database.get_engine(db_url)
    with Session(engine, expire_on_commit=False) as one, Session(engine, expire_on_commit=False) as two:
        early, complete = load_contact(one, claims), load_contact(two, claims)
        partial = record_partial(one, early, SurveyAnswers(redflags=["chest_pain"]), channel="web", now=utcnow())
        answers = SurveyAnswers(**{**OK_24H.model_dump(), "redflags": ["chest_pain"]})
        answered = record_answer(two, complete, answers, channel="web", now=utcnow())
    assert answered.response.id == partial.response.id and answered.outcome.case_id == partial.outcome.case_id
    [row] = rows(db, SurveyResponse)
    assert row.soreness == 3 and db.get(Contact, contact.id).status == "answered"  # type: ignore[union-attr]
