"""The nerve follow-ups (getting worse? walking normally?) and the faint answer, from the survey page and the
JSON API to the stored answer, the rule evaluation, the advice and the case (rules R4 and R6)."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from models import Clinic, EscalationCase, RuleEvaluation, SurveyResponse
from needlecare.core.settings import Settings
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import (
    NERVE,
    NERVE_FOLLOW_UP_ALONE,
    NERVE_FOLLOW_UPS,
    REDFLAGS,
    InvalidAnswers,
    SurveyAnswers,
    lenient_answers,
    redflag_options,
    validate_answers,
)
from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.ruleset import get_rules
from needlecare.web.app import create_app
from tests.records import make_contact, make_session, token_for

INJURY = "achilles_tendinopathy"
CHECK_24H: dict[str, Any] = {"soreness": 2, "nprs_worst": 3, "bruise": "none", "redflags": ["none"], "fainted": False}


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _validate(data: dict[str, Any], step: str = "check_24h") -> SurveyAnswers:
    protocol = get_protocol(INJURY)
    return validate_answers(
        {**CHECK_24H, **data}, protocol=protocol, step=protocol.step(step), regions_needled=["calf"]
    )


def _tier(answers: SurveyAnswers, rule: str, hours: float = 30) -> str | None:
    inp = EvaluationInput.from_answers(answers, hours_since_session=hours, injury_slug=INJURY, step_id="check_24h")
    return evaluate(get_rules(), inp).tier_of(rule)


# ---- validation and inputs -------------------------------------------------------------------------------


def test_follow_ups_are_not_checklist_items_and_do_not_change_the_count() -> None:
    assert not set(NERVE_FOLLOW_UPS) & set(REDFLAGS)
    assert not set(NERVE_FOLLOW_UPS) & set(redflag_options(INJURY))
    assert set(REDFLAGS) >= NERVE


@pytest.mark.parametrize(
    ("flags", "worse", "cannot_walk", "tier"),
    [
        (["new_numbness"], False, False, "SAME_DAY"),
        (["new_weakness", "foot_drop", "nerve_getting_worse"], True, False, "EMERGENCY"),
        (["new_tingling", "nerve_cannot_walk"], False, True, "EMERGENCY"),
        (["foot_drop", "nerve_getting_worse", "nerve_cannot_walk"], True, True, "EMERGENCY"),
    ],
)
def test_nerve_follow_ups_set_the_r6_inputs(flags: list[str], worse: bool, cannot_walk: bool, tier: str) -> None:
    answers = _validate({"redflags": flags})
    assert (answers.getting_worse, answers.cannot_walk) == (worse, cannot_walk)
    assert not set(answers.ticked_redflags) & set(NERVE_FOLLOW_UPS), "the redflags input holds checklist items only"
    assert _tier(answers, "R6") == tier


def test_without_a_nerve_item_the_follow_ups_were_not_asked() -> None:
    answers = _validate({"redflags": ["pus"]})
    assert (answers.getting_worse, answers.cannot_walk) == (None, None)


@pytest.mark.parametrize("follow_up", sorted(NERVE_FOLLOW_UPS))
def test_a_follow_up_ticked_without_a_nerve_item_is_refused_with_a_clear_message(follow_up: str) -> None:
    with pytest.raises(InvalidAnswers) as refused:
        _validate({"redflags": ["pus", follow_up]})
    assert refused.value.errors == {"redflags": NERVE_FOLLOW_UP_ALONE}
    with pytest.raises(InvalidAnswers) as both:
        _validate({"redflags": ["none", follow_up]})
    assert "None of these" in both.value.errors["redflags"]


def test_the_follow_ups_count_even_when_the_rest_of_the_form_is_invalid() -> None:
    """Advice for a form that cannot be stored (lenient answers) still sees "getting worse"."""
    answers = lenient_answers({"redflags": ["new_weakness", "nerve_getting_worse"], "soreness": "lots"})
    assert answers.getting_worse is True
    assert _tier(answers, "R6") == "EMERGENCY"


@pytest.mark.parametrize(
    ("data", "tier"),
    [
        ({"fainted": True, "redflags": ["palpitations"]}, "EMERGENCY"),
        ({"fainted": True, "redflags": ["injury_from_fall"]}, "EMERGENCY"),
        ({"fainted": True, "redflags": ["chest_pain"]}, "EMERGENCY"),
        ({"fainted": False, "redflags": ["palpitations"]}, None),
        ({"fainted": True, "redflags": ["none"]}, None),  # may be in the session, in the clinic (domain.md §3.3)
        ({"fainted": False, "redflags": ["fainted_after_leaving"]}, "SAME_DAY"),
    ],
)
def test_the_faint_answer_feeds_r4(data: dict[str, Any], tier: str | None) -> None:
    assert _tier(_validate(data), "R4") == tier


# ---- through the survey page and the API -----------------------------------------------------------------


def _cases(db: Session) -> list[EscalationCase]:
    db.expire_all()
    return list(db.exec(select(EscalationCase).order_by(col(EscalationCase.id))).all())


def test_the_survey_page_asks_the_follow_ups_beside_the_nerve_items(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    html = client.get(f"/s/{token_for(contact, settings)}").text
    for key in NERVE_FOLLOW_UPS:
        assert f'name="redflags" value="{key}"' in html
    assert "Is it getting worse? Can you walk normally?" in html
    assert (
        html.index('value="foot_drop"')
        < html.index('value="nerve_getting_worse"')
        < html.index('value="calf_swollen_warm_one_leg"')
    ), "shown right after the nerve items"
    assert "someone" not in html.lower() and "monitor" not in html.lower()


def test_weakness_getting_worse_on_the_form_is_an_emergency_with_a_case(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    form = {
        "soreness": "2",
        "nprs_worst": "3",
        "bruise": "none",
        "fainted": "no",
        "redflags": ["new_weakness", "foot_drop", "nerve_getting_worse"],
    }
    page = client.post(f"/s/{token_for(contact, settings)}", data=form)
    assert page.status_code == 200, page.text
    assert "advice-EMERGENCY" in page.text and "getting worse, or that stops you walking" in page.text
    db.expire_all()
    stored = db.exec(select(SurveyResponse)).one()
    assert stored.redflags == ["new_weakness", "foot_drop", "nerve_getting_worse"]
    assert stored.advice_tier == "EMERGENCY"
    evaluation = db.exec(select(RuleEvaluation).where(RuleEvaluation.response_id == stored.id)).one()
    assert evaluation.inputs["getting_worse"] is True and evaluation.inputs["cannot_walk"] is False
    assert {"id": "R6", "tier": "EMERGENCY", "upgraded": True} in [
        {k: rule[k] for k in ("id", "tier", "upgraded")} for rule in evaluation.fired
    ]
    [case] = _cases(db)
    assert case.tier == "EMERGENCY"


def test_cannot_walk_through_the_api_and_a_refused_lone_follow_up(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_72h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    body = {
        "soreness": 1,
        "nprs_usual": 3,
        "nprs_worst": 4,
        "bruise": "none",
        "ran": False,
        "groc15": 0,
        "redflags": ["nerve_cannot_walk"],
    }
    refused = client.post(url, json=body)
    assert refused.status_code == 422, refused.text
    assert NERVE_FOLLOW_UP_ALONE in refused.text
    answered = client.post(url, json={**body, "redflags": ["new_numbness", "nerve_cannot_walk"]})
    assert answered.status_code == 201, answered.text
    assert answered.json()["advice"]["tier"] == "EMERGENCY"
    [case] = _cases(db)
    assert case.tier == "EMERGENCY"


def test_fainted_with_palpitations_through_the_api_is_an_emergency(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    answered = client.post(url, json={**CHECK_24H, "fainted": True, "redflags": ["palpitations"]})
    assert answered.status_code == 201, answered.text
    assert answered.json()["advice"]["tier"] == "EMERGENCY"
    db.expire_all()
    evaluation = db.exec(select(RuleEvaluation)).one()
    assert evaluation.inputs["fainted"] is True
    assert "R4" in [rule["id"] for rule in evaluation.fired]


def test_a_lone_follow_up_on_the_form_is_explained_beside_the_checklist(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    form = {"soreness": "2", "nprs_worst": "3", "bruise": "none", "fainted": "no", "redflags": ["nerve_getting_worse"]}
    page = client.post(f"/s/{token_for(contact, settings)}", data=form)
    assert page.status_code == 422, page.text
    assert 'id="err-redflags"' in page.text
    assert "also tick which of new numbness, pins and needles, weakness or a dragging foot you have" in page.text
    assert 'value="nerve_getting_worse" checked' in page.text, "the ticked follow-up is kept"
