"""Pain is asked with the recall period it is compared with: usual pain "on average over the last 24 hours"
(the baseline's recall, read by R9, R14 and R17), worst pain over 24 h for R8; each stored score keeps its
recall, and a rule never sets scores of two recall periods against each other. SQLite and PostgreSQL."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from models import Clinic, RuleEvaluation, SurveyResponse
from models.base import utcnow
from models.survey import BASELINE_PAIN_RECALL, RECALL_COLUMNS, PainRecall
from needlecare.core.settings import Settings
from needlecare.followup.protocols import get_protocols
from needlecare.followup.questions import PAIN_QUESTIONS, PAIN_RECALL, validate_answers
from needlecare.outcomes.fhir_questionnaire import build_questionnaire
from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.ruleset import get_rules
from needlecare.web.app import create_app
from tests.records import make_contact, make_session, token_for

USUAL = PAIN_QUESTIONS["nprs_usual"]
WORST = PAIN_QUESTIONS["nprs_worst"]
PAIRED = ("nprs_usual", "nprs_usual_change", "nprs_usual_drop", "nprs_usual_drop_pct")


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# A calm answer to every question a form may ask; each test sends those its step asks, with its own changes.
CALM: dict[str, str] = {
    "soreness": "1",
    "nprs_usual": "2",
    "nprs_worst": "3",
    "bruise": "none",
    "redflags": "none",
    "fainted": "no",
    "ran": "no",
    "groc15": "1",
}


def form(step_id: str, **changes: str) -> dict[str, str]:
    """The form fields for the step's questions (of the Achilles pack), calm unless changed."""
    asked = get_protocols()["achilles_tendinopathy"].step(step_id).questions
    return {name: value for name, value in (CALM | changes).items() if name in asked}


def _variables(condition: Any) -> set[str]:
    """Every variable a rule condition (or upgrade condition) names."""
    dumped = condition.model_dump() if hasattr(condition, "model_dump") else condition
    found: set[str] = set()
    if isinstance(dumped, dict):
        if isinstance(dumped.get("var"), str):
            found.add(dumped["var"])
        for value in dumped.values():
            found |= _variables(value)
    elif isinstance(dumped, list):
        for value in dumped:
            found |= _variables(value)
    return found


# ---- the wording and the recall of each question ------------------------------------------------------


def test_usual_pain_is_asked_with_the_baselines_recall_and_worst_pain_over_24_hours() -> None:
    assert PAIN_RECALL["nprs_usual"] == BASELINE_PAIN_RECALL == PainRecall.AVERAGE_24H
    assert USUAL.startswith("On average over the last 24 hours") and "right now" not in USUAL
    assert PAIN_RECALL["nprs_worst"] == PainRecall.WORST_24H and "worst" in WORST and "last 24 hours" in WORST
    assert set(PAIN_RECALL) == set(PAIN_QUESTIONS) == set(RECALL_COLUMNS)


def test_every_rule_reading_pain_reads_a_score_of_the_recall_it_needs() -> None:
    """The rules that set pain against the baseline read nprs_usual (asked over 24 h on average, as the baseline
    is); R8 reads nprs_worst (worst over 24 h). No rule reads run pain or pain now against the baseline."""
    readers: dict[str, set[str]] = {}
    for rule in get_rules().rules:
        names = _variables(rule.when) | (_variables(rule.upgrade.when) if rule.upgrade and rule.upgrade.when else set())
        for name in names:
            readers.setdefault(name, set()).add(rule.id)
    assert {"R9", "R14", "R17"} <= set().union(*(readers.get(name, set()) for name in PAIRED))
    assert "R8" in readers["nprs_worst"]
    assert PAIN_RECALL["nprs_usual"] == BASELINE_PAIN_RECALL


def test_every_step_that_asks_usual_pain_shows_the_24_hour_wording(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    protocols = get_protocols()
    steps = [step.id for step in protocols["achilles_tendinopathy"].steps if "nprs_usual" in step.questions]
    assert steps, "the protocol asks usual pain somewhere"
    pages = {
        step_id: client.get(f"/s/{token_for(make_contact(db, session, step_id), settings)}").text for step_id in steps
    }
    for step_id, html in pages.items():
        assert USUAL in html, step_id
        assert "hurt right now" not in html, step_id
    assert WORST in pages["check_72h"]


def test_the_fhir_questionnaire_states_each_pain_questions_recall() -> None:
    for protocol in get_protocols().values():
        for step in protocol.steps:
            items = {item.linkId: item.text for item in build_questionnaire(protocol, step).item or []}
            for question in ("nprs_usual", "nprs_worst"):
                if question in step.questions:
                    text = items[question]
                    assert text is not None and text.startswith(PAIN_QUESTIONS[question]), (step.id, text)
                    assert "right now" not in text


# ---- what is stored ---------------------------------------------------------------------------------


def test_each_stored_score_keeps_the_recall_it_was_asked_with(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    answered = form("check_72h", ran="yes", run_pain="4")
    page = client.post(f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}", data=answered)
    assert page.status_code == 200, page.text
    page = client.post(
        f"/s/{token_for(make_contact(db, session, 'check_24h'), settings)}",
        data=form("check_24h", soreness="3"),
    )
    assert page.status_code == 200, page.text

    db.expire_all()
    stored = {r.step_id: r for r in db.exec(select(SurveyResponse)).all()}
    check = stored["check_72h"]
    assert (check.nprs_usual_recall, check.nprs_worst_recall) == ("average_24h", "worst_24h")
    assert (check.soreness_recall, check.run_pain_recall) == ("now", "during_run")
    first = stored["check_24h"]
    assert first.soreness_recall == "now" and first.nprs_usual is None
    assert first.nprs_usual_recall is first.run_pain_recall is None


def test_the_api_stores_the_same_recall(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "outcome_6wk")
    body = {"nprs_usual": 4, "groc15": 2, "psfs": [{"activity": "Running", "score": 5}], "ran": False}
    reply = client.post(f"/api/v1/surveys/{token_for(contact, settings)}/answers", json=body)
    assert reply.status_code == 201, reply.text
    db.expire_all()
    [stored] = db.exec(select(SurveyResponse)).all()
    assert (stored.nprs_usual, stored.nprs_usual_recall) == (4, "average_24h")


def test_the_audited_rule_inputs_carry_both_recalls_and_R9_compares_them(
    client: TestClient, db: Session, settings: Settings
) -> None:
    """Baseline 3 (usual pain over 24 h), 72 h later usual pain 6 over 24 h: R9 fires on a like pair."""
    session = make_session(
        db, baseline__pain_nprs=3, completed_at=(utcnow() - timedelta(hours=72)).isoformat(timespec="seconds")
    )
    answered = form("check_72h", nprs_usual="6", nprs_worst="6", groc15="-1")
    page = client.post(f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}", data=answered)
    assert page.status_code == 200, page.text
    db.expire_all()
    evaluation = db.exec(select(RuleEvaluation)).one()
    assert evaluation.inputs["nprs_usual_recall"] == evaluation.inputs["baseline_nprs_recall"] == "average_24h"
    assert evaluation.inputs["nprs_usual_change"] == 3
    assert "R9" in [rule["id"] for rule in evaluation.fired]


# ---- rules compare like with like -------------------------------------------------------------------


CASES: list[tuple[str, dict[str, Any]]] = [
    ("R9", {"hours_since_session": 72, "baseline_nprs": 3, "nprs_usual": 6}),
    ("R14", {"hours_since_session": 72, "injury_slug": "bone_stress_injury", "bsi_risk_class": "high"}),
    ("R17", {"hours_since_session": 700, "baseline_nprs": 8, "nprs_usual": 2}),
]


@pytest.mark.parametrize(("rule_id", "inputs"), CASES, ids=[c[0] for c in CASES])
def test_a_pain_rule_fires_on_a_like_pair_and_never_on_pain_of_another_recall(
    rule_id: str, inputs: dict[str, Any]
) -> None:
    if rule_id == "R14":
        inputs = inputs | {"baseline_nprs": 4, "nprs_usual": 5}
    rules = get_rules()
    like = EvaluationInput(**inputs)
    assert rule_id in evaluate(rules, like).fired_ids
    for other in (PainRecall.NOW, PainRecall.WORST_24H, PainRecall.DURING_RUN):
        unlike = EvaluationInput(**inputs, nprs_usual_recall=other)
        assert unlike.nprs_usual_change is None and unlike.nprs_usual_drop_pct is None
        assert rule_id not in evaluate(rules, unlike).fired_ids, other
        assert evaluate(rules, unlike).inputs["nprs_usual_recall"] == other.value


def test_a_baseline_of_another_recall_pairs_with_nothing() -> None:
    inputs = EvaluationInput(hours_since_session=72, baseline_nprs=3, nprs_usual=6, baseline_nprs_recall=PainRecall.NOW)
    assert inputs.nprs_usual_change is None
    assert "R9" not in evaluate(get_rules(), inputs).fired_ids


def test_worst_pain_still_fires_R8_at_any_check() -> None:
    protocol = get_protocols()["achilles_tendinopathy"]
    step = protocol.step("check_72h")
    data: dict[str, Any] = form("check_72h", nprs_worst="8") | {"redflags": ["none"]}
    answers = validate_answers(
        data,
        protocol=protocol,
        step=step,
        regions_needled=["calf"],
    )
    assert answers.recalls()["nprs_worst_recall"] == "worst_24h"
    inputs = EvaluationInput.from_answers(answers, hours_since_session=70, step_id=step.id, baseline_nprs=6)
    assert "R8" in evaluate(get_rules(), inputs).fired_ids
    assert inputs.nprs_usual_recall == PainRecall.AVERAGE_24H
