"""A survey form or JSON answer refused for errors elsewhere that ticks a red flag: its red-flag part is stored
with its rule evaluation, case and queued alert, the advice shown is that stored evaluation's, the rest of the
form comes back to complete, and the complete answer is then taken. On SQLite and PostgreSQL, through the real app.
"""

import html
import re
import threading
from collections.abc import Iterator
from typing import TypeVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from models import Alert, AuditEvent, CaseRule, Clinic, EscalationCase, RuleEvaluation, SurveyResponse
from needlecare.core.settings import Settings
from needlecare.safety import sla
from needlecare.safety.advice import SAVED, Advice, advice_from
from needlecare.safety.clinic_config import config_of
from needlecare.safety.rules.evaluation import Evaluation, FiredRule
from needlecare.safety.rules.ruleset import get_rules
from needlecare.web.app import create_app
from needlecare.web.surveys import router
from tests.records import make_contact, make_session, token_for

T = TypeVar("T")
NOT_SAVED = "Your answers are not saved yet, and your clinic has not been sent an alert."
CHECK_24H_OK = {
    "soreness": "3",
    "nprs_worst": "2",
    "bruise": "small",
    "redflags": "none",
    "fainted": "no",
    "free_text": "",
}


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings)
    if not any(getattr(route, "path", None) == "/s/{token}" for route in app.routes):
        app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def rows(db: Session, model: type[T]) -> list[T]:
    db.expire_all()
    return list(db.exec(select(model).order_by(col(model.id))).all())  # type: ignore[attr-defined]


def stored_advice(db: Session, evaluation: RuleEvaluation, *, clinic: Clinic) -> Advice | None:
    """The advice of a stored evaluation: its fired rules' texts from the rule set, its tier, the clinic's hours
    at the time of the evaluation; as for answers that are not stored whole (no "saved" sentence)."""
    rules = {rule.id: rule for rule in get_rules().rules}
    fired = []
    for item in evaluation.fired:
        rule = rules[item["id"]]
        text = rule.upgrade if item["upgraded"] and rule.upgrade is not None else rule
        fired.append(
            FiredRule(
                id=item["id"],
                version=item["version"],
                tier=item["tier"],
                upgraded=item["upgraded"],
                patient_message=text.patient_message,
                practitioner_message=text.practitioner_message,
            )
        )
    as_stored = Evaluation(
        rules_version=evaluation.rules_version,
        inputs=evaluation.inputs,
        fired=fired,
        highest_tier=evaluation.highest_tier,
    )
    db.refresh(clinic)
    hours = config_of(clinic.config).opening_hours
    return advice_from(as_stored, saved=False, clinic_open=sla.is_open(evaluation.evaluated_at, hours, clinic.timezone))


def page_advice(text: str) -> tuple[str, str, str]:
    """Tier, title and message of the advice box on a page."""
    found = re.search(
        r'<section class="advice advice-(\w+)"[^>]*>\s*<h2 id="advice-title">(.*?)</h2>\s*<p>(.*?)</p>', text, re.S
    )
    assert found, "the page has no advice"
    return found.group(1), html.unescape(found.group(2)), html.unescape(found.group(3))


def summary_links(text: str) -> list[tuple[str, str]]:
    block = text[text.index('id="error-summary"') : text.index("</ul>", text.index('id="error-summary"'))]
    return [(href, html.unescape(words)) for href, words in re.findall(r'<a href="#([^"]+)">([^<]+)</a>', block)]


# ---- the form ------------------------------------------------------------------------------------------


def test_an_invalid_form_with_a_red_flag_stores_its_part_opens_a_case_and_queues_the_alert(
    client: TestClient, db: Session, settings: Settings, clinic: Clinic
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    form = {"redflags": ["chest_pain", "pus"], "bruise": "large", "soreness": "", "free_text": "Sore since Monday"}
    page = client.post(f"/s/{token_for(contact, settings)}", data=form)
    assert page.status_code == 422

    [partial] = rows(db, SurveyResponse)
    assert partial.contact_id == contact.id and partial.channel == "web"
    assert partial.redflags == ["chest_pain", "pus"] and partial.bruise == "large"
    assert partial.free_text == "Sore since Monday", "a rule input, valid on its own"
    assert (partial.soreness, partial.fainted, partial.nprs_usual, partial.groc15) == (None, None, None, None)
    assert partial.advice_tier == "EMERGENCY"
    db.refresh(contact)
    assert contact.status == "sent" and contact.answered_at is None, "the check stays open for the rest"

    [evaluation] = rows(db, RuleEvaluation)
    assert (evaluation.kind, evaluation.response_id, evaluation.contact_id) == ("partial", partial.id, contact.id)
    assert evaluation.highest_tier == "EMERGENCY" and evaluation.inputs["redflags"] == ["chest_pain", "pus"]
    [case] = rows(db, EscalationCase)
    assert (case.evaluation_id, case.response_id, case.tier, case.status) == (
        evaluation.id,
        partial.id,
        "EMERGENCY",
        "open",
    )
    assert {r.rule_id for r in rows(db, CaseRule)} == {"R2", "R5", "R7"}, "R7: the large bruise, valid on its own"
    [alert] = rows(db, Alert)
    assert (alert.case_id, alert.audience, alert.status, alert.tier) == (case.id, "primary", "pending", "EMERGENCY")
    [audit] = [event for event in rows(db, AuditEvent) if event.action == "survey.partial"]
    assert audit.detail["case_id"] == case.id and "Sore" not in str(audit.detail), "IDs only"

    # The advice on the page is the stored evaluation's, word for word.
    expected = stored_advice(db, evaluation, clinic=clinic)
    assert expected is not None
    assert page_advice(page.text) == (expected.tier, expected.title, expected.message)
    assert SAVED not in page.text and NOT_SAVED not in page.text
    assert "The warning signs you ticked are saved with your record." in page.text
    assert "We are sending your clinic an alert about them. It may not be read straight away." in page.text
    assert 'href="tel:911"' in page.text and 'href="tel:+15550100200"' in page.text


def test_the_form_comes_back_with_what_was_typed_and_the_error_summary(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    form = {"redflags": ["breathless"], "bruise": "small", "free_text": "It <hurts> & I worry"}
    page = client.post(f"/s/{token_for(contact, settings)}", data=form)
    assert page.status_code == 422
    text = page.text
    assert "<title>Error: " in text
    assert [href for href, _ in summary_links(text)] == ["soreness-0", "nprs_worst-0", "fainted-0"]
    assert 'id="err-soreness"' in text and 'id="err-fainted"' in text
    assert re.search(r'value="breathless" checked', text), "the ticked red flag stays ticked"
    assert re.search(r'name="bruise" value="small" checked', text)
    assert "It &lt;hurts&gt; &amp; I worry</textarea>" in text
    assert 'id="error-summary" tabindex="-1" aria-labelledby' in text, "no autofocus under urgent advice"
    # The link still opens the form to finish it.
    again = client.get(f"/s/{token_for(contact, settings)}")
    assert again.status_code == 200 and 'name="soreness"' in again.text


def test_the_complete_answer_is_then_taken_into_the_same_row_without_a_second_case(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    url = f"/s/{token_for(contact, settings)}"
    assert client.post(url, data={"redflags": "chest_pain"}).status_code == 422
    [partial] = rows(db, SurveyResponse)

    done = client.post(url, data={**CHECK_24H_OK, "redflags": "chest_pain", "bruise": "none"})
    assert done.status_code == 200, done.text
    assert "Thank you" in done.text and "We are sending your clinic an alert about your answers." in done.text
    [complete] = rows(db, SurveyResponse)
    assert complete.id == partial.id
    assert (complete.soreness, complete.bruise, complete.fainted, complete.redflags) == (
        3,
        "none",
        False,
        ["chest_pain"],
    )
    db.refresh(contact)
    assert contact.status == "answered"
    kinds = [(e.kind, e.response_id, e.highest_tier) for e in rows(db, RuleEvaluation)]
    assert kinds == [("partial", partial.id, "EMERGENCY"), ("answer", partial.id, "EMERGENCY")]
    [case] = rows(db, EscalationCase)
    assert case.response_id == complete.id, "the practitioner's case now shows the complete answer"
    assert len(rows(db, Alert)) == 1, "the same flags are alerted once"
    assert client.post(url, data=CHECK_24H_OK).status_code == 409


def test_without_a_red_flag_an_invalid_form_stores_nothing(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    # Worst pain 9 gives same-day advice at once, but with no red flag ticked nothing is half-stored.
    page = client.post(f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}", data={"nprs_worst": "9"})
    assert page.status_code == 422 and "advice-SAME_DAY" in page.text and NOT_SAVED in page.text
    none = client.post(
        f"/s/{token_for(make_contact(db, session, 'check_24h'), settings)}", data={"redflags": "none", "bruise": "x"}
    )
    assert none.status_code == 422
    for model in (SurveyResponse, RuleEvaluation, EscalationCase, Alert):
        assert rows(db, model) == [], model.__name__


def test_a_warning_sign_ticked_beside_none_of_these_is_stored(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    page = client.post(f"/s/{token_for(contact, settings)}", data={**CHECK_24H_OK, "redflags": ["none", "pus"]})
    assert page.status_code == 422 and "untick one of them" in page.text
    [partial] = rows(db, SurveyResponse)
    assert partial.redflags == ["pus"] and (partial.soreness, partial.fainted) == (3, False), "valid on their own"
    [case] = rows(db, EscalationCase)
    assert case.tier == "SAME_DAY"


# ---- the JSON API --------------------------------------------------------------------------------------


def test_api_422_with_a_red_flag_stores_its_part_and_then_takes_the_answer(
    client: TestClient, db: Session, settings: Settings, clinic: Clinic
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    refused = client.post(url, json={"redflags": ["site_hot_swollen"], "soreness": 11, "fainted": False})
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert set(body["detail"]) == {"soreness", "nprs_worst", "bruise"}
    [partial] = rows(db, SurveyResponse)
    [evaluation] = rows(db, RuleEvaluation)
    [case] = rows(db, EscalationCase)
    assert body["partial"] == {"response_id": partial.id, "alerted": True}
    assert partial.fainted is False and partial.soreness is None
    expected = stored_advice(db, evaluation, clinic=clinic)
    assert expected is not None and body["advice"] == expected.as_dict()
    assert body["advice"]["tier"] == case.tier == "SAME_DAY"
    assert [alert.case_id for alert in rows(db, Alert)] == [case.id]

    done = client.post(
        url,
        json={"redflags": ["site_hot_swollen"], "soreness": 4, "nprs_worst": 3, "bruise": "none", "fainted": False},
    )
    assert done.status_code == 201, done.text
    assert done.json()["response_id"] == partial.id
    assert len(rows(db, EscalationCase)) == 1 and len(rows(db, Alert)) == 1


def test_a_partial_after_the_complete_answer_is_refused_and_stores_nothing(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    answered = client.post(
        url, json={"soreness": 1, "nprs_worst": 2, "bruise": "none", "redflags": ["none"], "fainted": False}
    )
    assert answered.status_code == 201
    late = client.post(url, json={"redflags": ["chest_pain"]})
    assert late.status_code == 409 and late.json()["advice"]["tier"] == "EMERGENCY"
    assert "partial" not in late.json()
    [answer] = rows(db, SurveyResponse)
    assert answer.redflags == ["none"] and rows(db, EscalationCase) == []
    assert [e.kind for e in rows(db, RuleEvaluation)] == ["answer"]


def test_partials_racing_the_complete_answer_never_block_it(
    client: TestClient, db: Session, settings: Settings
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    complete = {"soreness": 2, "nprs_worst": 3, "bruise": "none", "redflags": ["chest_pain"], "fainted": False}
    bodies = [{"redflags": ["chest_pain"]}, complete, {"redflags": ["chest_pain"], "soreness": 1}, complete]
    barrier = threading.Barrier(len(bodies))
    statuses: dict[int, int] = {}

    def submit(index: int) -> None:
        barrier.wait()
        statuses[index] = client.post(url, json=bodies[index]).status_code

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted([statuses[1], statuses[3]]) == [201, 409], statuses
    assert statuses[0] in (409, 422) and statuses[2] in (409, 422), statuses
    [row] = rows(db, SurveyResponse)
    assert (row.soreness, row.bruise) == (2, "none"), "the complete answer is what is stored"
    db.refresh(contact)
    assert contact.status == "answered"
    assert len(rows(db, EscalationCase)) == 1 and len(rows(db, Alert)) == 1, "the same flag, one case"
