"""Signed survey links, the survey page and the JSON answers API, on SQLite and PostgreSQL.

Rows are made the way production makes them where that exists (ingest.record for session and patient);
episodes and contacts are created directly until the planning flow lands.
"""

import base64
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import AuditEvent, Clinic, Patient, SurveyResponse
from models.base import utcnow
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.core.tokens import TokenClaims, TokenExpired, TokenInvalid, make_token, read_token
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import NOT_ASKED, InvalidAnswers, SurveyAnswers, lenient_answers, validate_answers
from needlecare.safety.advice import (
    CLOSED_NOTE,
    CLOSED_TITLE,
    EMERGENCY_TITLE,
    SAME_DAY_TITLE,
    SAVED,
    Advice,
    advice_from,
)
from needlecare.safety.clinic_config import parse_config, to_stored
from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.ruleset import get_rules
from needlecare.surveys.responses import SurveyUnavailable, load_contact, record_answer
from needlecare.web.app import create_app
from needlecare.web.surveys import router
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE
from tests.records import make_contact, make_session, token_for

INJURY = "achilles_tendinopathy"
SECRET = "test-secret-key-for-survey-links-0123456789"
CLINIC_WORDS = ("Riverside", "riverside", "+15550100200")


# ---- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture
def app(settings: Settings, clinic: Clinic) -> FastAPI:
    application = create_app(settings)
    if not any(getattr(route, "path", None) == "/s/{token}" for route in application.routes):
        application.include_router(router)
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def responses(db: Session) -> list[SurveyResponse]:
    db.expire_all()
    return list(db.exec(select(SurveyResponse)).all())


def assert_reveals_nothing(text: str) -> None:
    for private in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE, *CLINIC_WORDS):
        assert private not in text
    for step_words in ("1-day", "3-day", "6-week", "check_24h", "Knee-to-wall", "soreness"):
        assert step_words not in text


CHECK_24H_OK = {
    "soreness": "3",
    "nprs_worst": "2",
    "bruise": "small",
    "redflags": "none",
    "fainted": "no",
    "free_text": "Bit stiff.",
}
CHECK_72H_OK = {
    "soreness": "1",
    "nprs_usual": "2",
    "nprs_worst": "3",
    "bruise": "none",
    "redflags": "none",
    "ran": "no",
    "groc15": "1",
}


# ---- the form ----------------------------------------------------------------------------------------


def test_form_shows_only_the_steps_questions(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    page = client.get(f"/s/{token_for(contact, settings)}")
    assert page.status_code == 200
    html = page.text
    assert 'name="viewport"' in html and "Hi Sam" in html
    for asked in ("soreness", "nprs_worst", "bruise", "redflags", "fainted", "free_text"):
        assert f'name="{asked}"' in html
    for not_asked in ("nprs_usual", "groc15", "rom_value", "psfs_activity_0", "ran", "run_pain"):
        assert f'name="{not_asked}"' not in html
    for private in (PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE):
        assert private not in html
    assert "None of these" in html and "Bleeding from a needle site" in html
    assert "Pain when you hop" not in html, "bone-stress items only for bone stress injury"
    assert "<script" not in html
    assert page.headers["cache-control"] == "no-store"
    # every 0-10 radio sits inside a label; every text field has a label
    assert html.count('type="radio" name="soreness"') == 11
    assert 'for="free_text"' in html and 'id="free_text"' in html
    assert "someone" not in html.lower() and "monitor" not in html.lower()


def test_form_for_72h_and_6wk_shows_groc_anchor_rom_and_psfs(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    html = client.get(f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}").text
    assert "Compared with before your last session" in html
    assert html.count('name="groc15"') == 15 and "A very great deal worse" in html and "About the same" in html
    assert 'name="nprs_worst"' in html and 'name="run_pain"' in html and 'name="rom_value"' not in html
    assert 'name="bruise"' in html, "bruising is asked again at 3 days (a bruise still spreading at 48 h or later)"

    html = client.get(f"/s/{token_for(make_contact(db, session, 'outcome_6wk'), settings)}").text
    assert "before this episode started" in html
    rom = get_protocol(INJURY).rom_test
    assert rom is not None
    assert rom.name in html and "Move the foot back a little at a time" in html
    assert 'type="number" id="rom_value"' in html and 'min="0"' in html and 'max="25"' in html and 'step="0.5"' in html
    assert all(f'name="psfs_activity_{i}"' in html for i in range(3)) and 'name="psfs_activity_3"' not in html
    assert 'name="redflags"' not in html


def test_trunk_needling_adds_the_breathing_note(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db, regions_needled=["calf", "thoracic_back"])
    html = client.get(f"/s/{token_for(make_contact(db, session, 'check_24h'), settings)}").text
    assert "near the chest, upper back, shoulder or neck" in html


def test_valid_post_stores_the_answer_and_thanks(
    client: TestClient, db: Session, settings: Settings, emitted: list[events.AppEvent]
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    page = client.post(f"/s/{token_for(contact, settings)}", data=CHECK_24H_OK)
    assert page.status_code == 200, page.text
    assert "Thank you" in page.text and 'role="alert"' not in page.text
    [stored] = responses(db)
    assert (stored.contact_id, stored.patient_id, stored.session_id) == (contact.id, contact.patient_id, session.id)
    assert (stored.episode_id, stored.injury, stored.step_id, stored.channel) == (
        session.episode_id,
        INJURY,
        "check_24h",
        "web",
    )
    assert (stored.soreness, stored.bruise, stored.redflags, stored.fainted) == (3, "small", ["none"], False)
    assert stored.free_text == "Bit stiff." and stored.advice_tier is None
    assert stored.nprs_usual is None and stored.groc15 is None and stored.psfs is None
    db.refresh(contact)
    assert contact.status == "answered" and contact.answered_at is not None
    audit = db.exec(select(AuditEvent).where(AuditEvent.action == "survey.answered")).one()
    assert audit.entity_id == str(stored.id) and "free_text" not in json.dumps(audit.detail)
    [event] = emitted
    assert event.event == "needlecare.survey.answered"
    assert event.resource_id == f"needlecare.survey.{stored.id}"
    assert event.payload == {
        "response_id": stored.id,
        "contact_id": contact.id,
        "patient_id": contact.patient_id,
        "session_id": session.id,
        "episode_id": session.episode_id,
    }
    dumped = json.dumps(events.describe(event))
    for private in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE, "Bit stiff"):
        assert private not in dumped


def test_invalid_post_shows_errors_beside_fields_and_keeps_values(
    client: TestClient, db: Session, settings: Settings, emitted: list[events.AppEvent]
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    form = {"bruise": "large", "fainted": "maybe", "free_text": "Typed <b>text</b> & more", "redflags": "none"}
    page = client.post(f"/s/{token_for(contact, settings)}", data=form)
    assert page.status_code == 422
    html = page.text
    assert 'id="err-soreness"' in html and 'aria-describedby="hint-soreness err-soreness"' in html
    assert 'id="err-fainted"' in html and "Choose “Yes” if you fainted or felt faint" in html
    assert 'id="err-bruise"' not in html
    assert 'value="large" checked' in html, "the bruise answer is kept"
    assert 'value="none" checked' in html, "the ticked box is kept"
    assert "Typed &lt;b&gt;text&lt;/b&gt; &amp; more</textarea>" in html, "free text kept, escaped"
    assert 'href="#soreness-0"' in html and 'id="soreness-0"' in html, "the summary links to the first choice"
    assert "<title>Error: 1-day check-in</title>" in html
    assert responses(db) == [] and emitted == []
    db.refresh(contact)
    assert contact.status == "sent"


def test_non_urgent_advice_is_a_polite_status_not_an_alert(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    page = client.post(f"/s/{token_for(contact, settings)}", data={**CHECK_24H_OK, "soreness": "7"})
    assert page.status_code == 200
    assert "advice-NEXT_BD" in page.text
    assert 'role="status"' in page.text and 'role="alert"' not in page.text


def test_red_flag_breathless_shows_emergency_advice_at_once(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    form = {**CHECK_24H_OK, "redflags": ["breathless", "pus"]}
    page = client.post(f"/s/{token_for(contact, settings)}", data=form)
    assert page.status_code == 200
    assert 'role="alert"' in page.text and "Call your local emergency number now" in page.text
    assert "advice-EMERGENCY" in page.text
    [stored] = responses(db)
    assert stored.advice_tier == "EMERGENCY" and stored.redflags == ["breathless", "pus"]


def test_same_day_flag_shows_same_day_advice_with_clinic_phone(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    page = client.post(f"/s/{token_for(contact, settings)}", data={**CHECK_24H_OK, "redflags": "spreading_redness"})
    assert page.status_code == 200
    assert "a needle site may be infected" in page.text and "urgent care" in page.text
    assert "advice-SAME_DAY" in page.text and "+15550100200" in page.text
    assert "emergency number now" not in page.text
    assert responses(db)[0].advice_tier == "SAME_DAY"


def test_red_flag_on_a_form_with_errors_still_shows_the_advice(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    page = client.post(f"/s/{token_for(contact, settings)}", data={"redflags": "chest_pain"})
    assert page.status_code == 422
    assert "Call your local emergency number now" in page.text and 'id="err-soreness"' in page.text
    assert SAVED not in page.text
    assert 'id="error-summary" tabindex="-1" aria-labelledby' in page.text, "no autofocus under urgent advice"
    [partial] = responses(db)  # its red-flag part is stored (tests/web/test_survey_partial.py)
    assert partial.redflags == ["chest_pain"] and partial.soreness is None


def test_an_answered_link_gives_409(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    url = f"/s/{token_for(contact, settings)}"
    assert client.post(url, data=CHECK_24H_OK).status_code == 200
    again = client.get(url)
    assert again.status_code == 409 and "already received" in again.text
    assert_reveals_nothing(again.text)
    posted = client.post(url, data={**CHECK_24H_OK, "redflags": "breathless"})
    assert posted.status_code == 409
    assert "Call your local emergency number now" in posted.text, "a red flag shows its advice even here"
    assert len(responses(db)) == 1


@pytest.mark.parametrize("mangle", ["tamper", "other_secret", "garbage", "binding"])
def test_a_bad_token_gives_a_404_page_revealing_nothing(
    client: TestClient, db: Session, settings: Settings, mangle: str
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    assert contact.id is not None
    good = token_for(contact, settings)
    secret = settings.secret_key.get_secret_value()
    token = {
        "tamper": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "other_secret": make_token(contact.id, contact.patient_id, "check_24h", contact.window_closes_at, "nope"),
        "garbage": "not-a-token",
        "binding": make_token(contact.id, contact.patient_id + 1, "check_24h", contact.window_closes_at, secret),
    }[mangle]
    for response in (client.get(f"/s/{token}"), client.post(f"/s/{token}", data=CHECK_24H_OK)):
        assert response.status_code == 404
        assert "This link does not work" in response.text
        assert_reveals_nothing(response.text)
    assert responses(db) == []


def test_an_expired_link_or_closed_window_gives_410(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    expired = make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(minutes=-1))
    page = client.get(f"/s/{token_for(expired, settings)}")
    assert page.status_code == 410 and "This link has expired" in page.text
    assert_reveals_nothing(page.text)
    # a token still valid, but the window in the database has closed (or the contact was expired or skipped)
    closed = make_contact(db, session, "check_72h", closes=timedelta(minutes=-1))
    token = token_for(closed, settings, expires_at=utcnow() + timedelta(days=1))
    page = client.get(f"/s/{token}")
    assert page.status_code == 410 and "closed" in page.text
    assert_reveals_nothing(page.text)
    assert client.post(f"/s/{token}", data={}).status_code == 410
    skipped = make_contact(db, session, "check_7d", status="skipped")
    assert client.get(f"/s/{token_for(skipped, settings)}").status_code == 410


def test_a_planned_contact_answers_only_inside_its_window(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    early = make_contact(db, session, "check_24h", status="planned", opens=timedelta(hours=2))
    assert client.get(f"/s/{token_for(early, settings)}").status_code == 410
    inside = make_contact(db, session, "check_72h", status="planned")
    url = f"/api/v1/surveys/{token_for(inside, settings)}/answers"
    body = {
        "soreness": 2,
        "nprs_usual": 3,
        "nprs_worst": 4,
        "bruise": "none",
        "redflags": ["none"],
        "ran": False,
        "groc15": 2,
    }
    assert client.post(url, json=body).status_code == 201


def test_an_opted_out_patient_can_still_answer(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    patient = db.get(Patient, session.patient_id)
    assert patient is not None
    patient.opted_out_at = utcnow()
    db.add(patient)
    db.commit()
    contact = make_contact(db, session, "check_24h")
    assert client.post(f"/s/{token_for(contact, settings)}", data=CHECK_24H_OK).status_code == 200
    assert len(responses(db)) == 1


def test_psfs_prefills_the_previous_activities(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    first = make_contact(db, session, "outcome_4wk")
    url = f"/api/v1/surveys/{token_for(first, settings)}/answers"
    body = {
        "nprs_usual": 4,
        "groc15": 3,
        "psfs": [{"activity": "Running 5 km", "score": 4}, {"activity": "Stairs down", "score": 7}],
        "rom": {"measure": "wblt_cm", "value": 8.5},
    }
    assert client.post(url, json=body).status_code == 201
    second = make_contact(db, session, "outcome_6wk")
    token = token_for(second, settings)
    html = client.get(f"/s/{token}").text
    assert 'value="Running 5 km" readonly' in html and 'value="Stairs down" readonly' in html
    assert 'name="psfs_activity_2"' not in html
    form = {
        "nprs_usual": "2",
        "groc15": "5",
        "psfs_activity_0": "Running 10 km",
        "psfs_score_0": "6",
        "psfs_activity_1": "Stairs down",
        "psfs_score_1": "9",
        "ran": "yes",
        "run_pain": "1",
        "rom_measure": "wblt_cm",
        "rom_value": "",
    }
    page = client.post(f"/s/{token}", data=form)
    assert page.status_code == 422 and "Rate the same activities as last time: Running 5 km; Stairs down" in page.text
    page = client.post(f"/s/{token}", data={**form, "psfs_activity_0": "Running 5 km"})
    assert page.status_code == 200, page.text
    stored = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == second.id)).one()
    assert stored.psfs == [{"activity": "Running 5 km", "score": 6}, {"activity": "Stairs down", "score": 9}]
    assert stored.rom_measure is None and stored.rom_value is None, "the self-test may be skipped"
    assert stored.session_id is None and stored.ran is True and stored.run_pain == 1


def test_form_run_pain_is_ignored_when_the_patient_did_not_run(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_72h")
    form = {
        "soreness": "1",
        "nprs_usual": "2",
        "nprs_worst": "3",
        "bruise": "none",
        "redflags": "none",
        "ran": "no",
        "run_pain": "4",
    }
    page = client.post(f"/s/{token_for(contact, settings)}", data={**form, "groc15": "-2"})
    assert page.status_code == 200, page.text
    stored = responses(db)[0]
    assert (stored.ran, stored.run_pain, stored.groc15) == (False, None, -2)


# ---- the error summary and the words of the page -----------------------------------------------------


def _summary(html: str) -> list[tuple[str, str]]:
    """(href, text) of each link in the error summary."""
    block = re.search(r'<div class="summary".*?</ul>', html, re.S)
    assert block is not None, "no error summary"
    return re.findall(r'<li><a href="#([^"]+)">([^<]+)</a></li>', block.group(0))


def test_error_summary_takes_focus_and_uses_the_words_of_the_page(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    url = f"/s/{token_for(contact, settings)}"
    page = client.post(url, data={"bruise": "huge", "redflags": "none", "soreness": "3", "nprs_worst": "2"})
    assert page.status_code == 422
    html = page.text
    assert "<title>Error: 1-day check-in</title>" in html
    assert re.search(r'<div class="summary" id="error-summary" tabindex="-1" autofocus', html)
    assert '<div role="alert">' in html and "There is a problem" in html
    assert "<script" not in html, "focus moves without JavaScript"
    assert _summary(html) == [
        ("bruise-0", "Choose whether you have a bruise where the needles went in, and how big it is"),
        ("fainted-0", "Choose “Yes” if you fainted or felt faint, or “No” if you did not"),
    ], "in the order of the page"
    for target, _ in _summary(html):
        assert f'id="{target}"' in html
    assert "none, small" not in html and "'None of these'" not in html, "no stored values named"
    # The same words beside each question, after a hidden "Error:" for screen readers.
    assert '<span class="visually-hidden">Error: </span>Choose whether you have a bruise' in html
    assert html.index('id="error-summary"') < html.index("<h1>"), "the summary comes before the heading"
    # A warning sign ticked with "None of these": said in the page's words, under the advice it already gets.
    both = client.post(
        url,
        data={"soreness": "3", "nprs_worst": "2", "bruise": "none", "redflags": ["none", "pus"], "fainted": "no"},
    )
    assert _summary(both.text) == [("redflags-0", "You ticked “None of these” and a warning sign: untick one of them")]
    assert "advice-SAME_DAY" in both.text and " autofocus" not in both.text


STEP_IDS = [step.id for step in get_protocol(INJURY).steps]


@pytest.mark.parametrize("step_id", STEP_IDS)
def test_every_summary_link_leads_to_a_control(
    client: TestClient, db: Session, settings: Settings, step_id: str
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, step_id)
    asked = get_protocol(INJURY).step(step_id).questions
    page = client.post(f"/s/{token_for(contact, settings)}", data={"ran": "yes"} if "ran" in asked else {})
    assert page.status_code == 422
    links = _summary(page.text)
    assert len(links) == len([q for q in asked if q not in ("free_text", "rom", "ran")]), links
    for target, message in links:
        control = re.search(rf'<(input|textarea)[^>]*\bid="{re.escape(target)}"', page.text)
        assert control is not None, target
        assert message.strip() and "needs an answer" not in message and "{" not in message
    if "run_pain" in asked:
        ran = "You said you ran: choose how much your injury hurt during the run, from 0 to 10"
        assert ("run_pain-0", ran) in links


def test_a_tampered_form_gets_one_message_linking_to_the_first_question(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    page = client.post(f"/s/{token_for(contact, settings)}", data={**CHECK_24H_OK, "groc15": "3"})
    assert page.status_code == 422
    [(target, message)] = _summary(page.text)
    assert target == "soreness-0" and message.startswith("Some answers did not match the questions on this page")


def test_the_emergency_number_is_shown_and_dialable(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    form_page = client.get(f"/s/{token_for(make_contact(db, session, 'check_24h'), settings)}").text
    assert 'call <a href="tel:911">911</a>, or contact the clinic' in form_page, "the clinic's country: +1, New York"
    assert "local emergency number" not in form_page
    thanks = client.post(f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}", data=CHECK_72H_OK)
    assert thanks.status_code == 200 and 'In an emergency, call <a href="tel:911">911</a>.' in thanks.text


def test_a_clinic_sets_its_own_emergency_number(
    client: TestClient, db: Session, settings: Settings, clinic: Clinic
) -> None:
    clinic.config = to_stored(parse_config({"emergency_number": "999"}))
    db.add(clinic)
    db.commit()
    session = make_session(db)
    token = token_for(make_contact(db, session, "check_24h"), settings)
    page = client.post(f"/s/{token}", data={"redflags": "breathless"})
    assert page.status_code == 422
    assert '<a class="call" href="tel:999">Call 999</a>' in page.text
    assert not re.search(r"\b911\b", page.text), "no other country's number (a word, not hex in the token)"


def test_after_a_red_flag_the_page_gives_the_clinic_phone_and_says_an_alert_is_sent(
    client: TestClient, db: Session, settings: Settings
) -> None:
    session = make_session(db)
    emergency = client.post(
        f"/s/{token_for(make_contact(db, session, 'check_24h'), settings)}",
        data={**CHECK_24H_OK, "redflags": "chest_pain"},
    )
    assert emergency.status_code == 200
    html = emergency.text
    advice = html[html.index('<section class="advice') : html.index("</section>")]
    assert '<a class="call" href="tel:911">Call 911</a>' in advice
    assert 'Clinic phone: <a href="tel:+15550100200">+1 555-010-0200</a>' in advice
    assert "We are sending your clinic an alert about your answers. It may not be read straight away." in advice
    for claim in ("watch", "monitor", "will call you", "someone", "right now"):
        assert claim not in html.lower(), claim
    same_day = client.post(
        f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}",
        data={**CHECK_72H_OK, "redflags": "pus"},
    )
    assert same_day.status_code == 200
    assert 'href="tel:+15550100200"' in same_day.text and "We are sending your clinic an alert" in same_day.text
    assert 'class="call"' not in same_day.text, "the big emergency button only for an emergency"


def test_no_alert_is_claimed_when_none_was_sent(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    # Answers that cannot be stored, with no red flag ticked: advice at once, and it says the clinic has not
    # been told (with a red flag its part is stored and alerted: tests/web/test_survey_partial.py).
    other = make_contact(db, make_session(db, 2), "check_72h")
    unsaved = client.post(f"/s/{token_for(other, settings)}", data={"nprs_worst": "9"})
    assert unsaved.status_code == 422
    assert "We are sending your clinic an alert" not in unsaved.text
    assert "Your answers are not saved yet, and your clinic has not been sent an alert." in unsaved.text
    assert 'href="tel:+15550100200"' in unsaved.text
    # A good-progress answer (INFO) opens no case: no alert, no clinic phone.
    info = client.post(
        f"/s/{token_for(make_contact(db, session, 'check_72h'), settings)}", data={**CHECK_72H_OK, "groc15": "5"}
    )
    assert info.status_code == 200 and "advice-INFO" in info.text
    assert "alert" not in info.text.lower().replace('role="status"', "") and "+15550100200" not in info.text


# ---- the JSON API ------------------------------------------------------------------------------------


def test_api_answers_201_then_409(
    client: TestClient, db: Session, settings: Settings, emitted: list[events.AppEvent]
) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    body = {"soreness": 8, "nprs_worst": 5, "bruise": "large", "redflags": ["none"], "fainted": True}
    first = client.post(url, json=body)
    assert first.status_code == 201, first.text
    [stored] = responses(db)
    assert first.json()["response_id"] == stored.id
    assert first.json()["advice"]["tier"] == "SAME_DAY" and stored.advice_tier == "SAME_DAY"
    assert stored.channel == "api" and stored.fainted is True and stored.free_text is None
    second = client.post(url, json=body)
    assert second.status_code == 409 and "already" in second.json()["detail"]
    assert len(responses(db)) == 1 and len(emitted) == 1


def test_api_422_maps_each_field_to_what_is_allowed(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    response = client.post(url, json={"soreness": 11, "bruise": "huge", "groc15": 2, "redflags": [], "colour": "red"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert set(detail) == {"soreness", "nprs_worst", "bruise", "groc15", "redflags", "fainted", "colour"}
    assert "0 (no soreness) to 10" in detail["soreness"] and "none, small, large" in detail["bruise"]
    assert detail["groc15"] == NOT_ASKED and "unknown field" in detail["colour"]
    assert response.json()["advice"] is None
    for raw in (b"[1, 2]", b"{not json", b""):
        bad = client.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert bad.status_code == 422 and "JSON object" in bad.json()["detail"]["body"]
    assert responses(db) == []
    spec = client.get("/openapi.json").json()
    assert "/api/v1/surveys/{token}/answers" in spec["paths"] and "/s/{token}" in spec["paths"]  # every public page


def test_api_bad_and_expired_tokens(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(seconds=-5))
    bad = client.post("/api/v1/surveys/abc.def/answers", json={"soreness": 1})
    assert bad.status_code == 404 and bad.json() == {"detail": "unknown or invalid survey link", "advice": None}
    assert client.post("/api/v1/surveys/abc.def/answers", content=b"[]").status_code == 404
    expired = client.post(f"/api/v1/surveys/{token_for(contact, settings)}/answers", json={"redflags": ["breathless"]})
    assert expired.status_code == 410
    assert expired.json()["advice"]["tier"] == "EMERGENCY", "a red flag still gets its advice"
    assert SAVED not in expired.json()["advice"]["message"]


def test_concurrent_double_submit_stores_one_answer(client: TestClient, db: Session, settings: Settings) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    url = f"/api/v1/surveys/{token_for(contact, settings)}/answers"
    body = {"soreness": 2, "nprs_worst": 3, "bruise": "none", "redflags": ["none"], "fainted": False}
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def submit() -> None:
        barrier.wait()
        statuses.append(client.post(url, json=body).status_code)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201, 409, 409, 409]
    assert len(responses(db)) == 1


def test_a_lost_race_in_record_answer_is_answered_not_500(db: Session, db_url: str, clinic: Clinic) -> None:
    """Both submits loaded the open contact before either stored: the second gets 'answered'."""
    from needlecare.core import db as database

    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    assert contact.id is not None
    claims = TokenClaims(contact.id, contact.patient_id, "check_24h", contact.window_closes_at)
    answers = SurveyAnswers(soreness=1, bruise="none", redflags=["none"], fainted=False)
    with (
        Session(database.get_engine(db_url), expire_on_commit=False) as one,
        Session(database.get_engine(db_url), expire_on_commit=False) as two,
    ):
        first, second = load_contact(one, claims), load_contact(two, claims)
        record_answer(one, first, answers, channel="api", now=utcnow())
        with pytest.raises(SurveyUnavailable) as lost:
            record_answer(two, second, answers, channel="web", now=utcnow())
    assert lost.value.reason == "answered"
    assert db.exec(select(func.count()).select_from(SurveyResponse)).one() == 1


# ---- tokens ------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=36)


def test_token_round_trip_carries_ids_only() -> None:
    token = make_token(42, 7, "check_24h", LATER, SECRET)
    assert read_token(token, SECRET, NOW) == TokenClaims(42, 7, "check_24h", LATER)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token) and len(token) < 160
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert payload == {"c": 42, "p": 7, "s": "check_24h", "e": int(LATER.timestamp())}


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot",
        "a.b.c",
        ".",
        "x" * 600,
        "é.é",
        "eyJjIjo0Mn0.AAAA",
        make_token(42, 7, "check_24h", LATER, "another-secret"),
        make_token(42, 7, "check_24h", LATER, SECRET) + "A",
        make_token(42, 7, "check_24h", LATER, SECRET).replace(".", ".=", 1),
    ],
)
def test_token_malformed_or_tampered_is_invalid(token: str) -> None:
    with pytest.raises(TokenInvalid):
        read_token(token, SECRET, NOW)


def test_token_with_a_changed_payload_is_invalid() -> None:
    token = make_token(42, 7, "check_24h", LATER, SECRET)
    payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"c":43,"e":%d,"p":7,"s":"check_24h"}' % int(LATER.timestamp()))
    with pytest.raises(TokenInvalid):
        read_token(forged.decode().rstrip("=") + "." + signature, SECRET, NOW)
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    with pytest.raises(TokenInvalid):
        read_token(flipped + "." + signature, SECRET, NOW)


def test_token_expiry() -> None:
    token = make_token(42, 7, "check_24h", LATER, SECRET)
    assert read_token(token, SECRET, LATER - timedelta(seconds=1)).contact_id == 42
    with pytest.raises(TokenExpired):
        read_token(token, SECRET, LATER)
    with pytest.raises(TokenInvalid):  # a forged token is invalid, whatever its expiry
        read_token(make_token(42, 7, "check_24h", NOW - timedelta(days=1), "other"), SECRET, NOW)


def test_token_binding_is_checked_against_the_contact(db: Session, clinic: Clinic) -> None:
    session = make_session(db)
    contact = make_contact(db, session, "check_24h")
    assert contact.id is not None
    good = TokenClaims(contact.id, contact.patient_id, "check_24h", contact.window_closes_at)
    assert load_contact(db, good).id == contact.id
    for claims in (
        TokenClaims(contact.id, contact.patient_id + 1, "check_24h", contact.window_closes_at),
        TokenClaims(contact.id, contact.patient_id, "check_72h", contact.window_closes_at),
        TokenClaims(contact.id + 1000, contact.patient_id, "check_24h", contact.window_closes_at),
    ):
        with pytest.raises(SurveyUnavailable) as refused:
            load_contact(db, claims)
        assert refused.value.reason == "invalid"


def test_make_token_refuses_naive_expiry() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_token(1, 1, "check_24h", datetime(2026, 1, 1), SECRET)


# ---- answers -----------------------------------------------------------------------------------------

OK_24H: dict[str, Any] = {"soreness": 3, "nprs_worst": 2, "bruise": "none", "redflags": ["none"], "fainted": False}
OK_72H: dict[str, Any] = {
    "soreness": 2,
    "nprs_usual": 3,
    "nprs_worst": 5,
    "bruise": "none",
    "redflags": ["none"],
    "ran": True,
    "run_pain": 2,
    "groc15": 1,
}
OK_7D: dict[str, Any] = {
    "soreness": 0,
    "nprs_usual": 2,
    "groc15": 3,
    "psfs": [{"activity": "Run", "score": 6}],
    "ran": False,
}
OK_6WK: dict[str, Any] = {"nprs_usual": 2, "groc15": 4, "psfs": [{"activity": "Run 5 km", "score": 6}], "ran": False}


@pytest.mark.parametrize(
    ("step_id", "data", "field", "needle"),
    [
        ("check_24h", {**OK_24H, "soreness": None}, "soreness", "needs an answer"),
        ("check_24h", {**OK_24H, "soreness": 11}, "soreness", "0 (no soreness) to 10"),
        ("check_24h", {**OK_24H, "soreness": -1}, "soreness", "0 (no soreness)"),
        ("check_24h", {**OK_24H, "soreness": 2.5}, "soreness", "whole number"),
        ("check_24h", {**OK_24H, "soreness": True}, "soreness", "whole number"),
        ("check_24h", {**OK_24H, "soreness": "three"}, "soreness", "whole number"),
        ("check_24h", {**OK_24H, "bruise": "huge"}, "bruise", "none, small, large"),
        ("check_24h", {**OK_24H, "nprs_worst": None}, "nprs_worst", "needs an answer"),
        ("check_24h", {**OK_24H, "fainted": "perhaps"}, "fainted", "yes or no"),
        ("check_24h", {**OK_24H, "groc15": 3}, "groc15", NOT_ASKED),
        ("check_24h", {**OK_24H, "psfs": []}, "psfs", NOT_ASKED),
        ("check_24h", {**OK_24H, "mood": "ok"}, "mood", "unknown field"),
        ("check_24h", {**OK_24H, "redflags": []}, "redflags", "needs an answer"),
        ("check_24h", {**OK_24H, "redflags": "none"}, "redflags", "Tick each one"),
        ("check_24h", {**OK_24H, "redflags": ["none", "pus"]}, "redflags", "None of these"),
        ("check_24h", {**OK_24H, "redflags": ["bogus"]}, "redflags", "Unknown item"),
        ("check_24h", {**OK_24H, "redflags": ["night_pain"]}, "redflags", "Unknown item"),
        ("check_24h", {**OK_24H, "free_text": "x" * 2001}, "free_text", "2000"),
        ("check_72h", {**OK_72H, "groc15": 8}, "groc15", "-7"),
        ("check_72h", {**OK_72H, "groc15": "+8"}, "groc15", "+7"),
        ("check_72h", {**OK_72H, "run_pain": None}, "run_pain", "You said you ran"),
        ("check_72h", {**OK_72H, "ran": False}, "run_pain", "Only answer this if you ran"),
        ("check_72h", {**OK_72H, "nprs_worst": 10.5}, "nprs_worst", "0 (no pain)"),
        ("check_72h", {**OK_72H, "bruise": None}, "bruise", "needs an answer"),
        ("check_7d", {**OK_7D, "soreness": None}, "soreness", "needs an answer"),
        ("outcome_6wk", {**OK_6WK, "psfs": []}, "psfs", "needs an answer"),
        ("outcome_6wk", {**OK_6WK, "psfs": [{"activity": "a", "score": 1}] * 6}, "psfs", "1 to 5"),
        ("outcome_6wk", {**OK_6WK, "psfs": [{"activity": "x" * 81, "score": 1}]}, "psfs", "80 characters"),
        ("outcome_6wk", {**OK_6WK, "psfs": [{"activity": "Run", "score": 11}]}, "psfs", "0 (unable"),
        ("outcome_6wk", {**OK_6WK, "psfs": [{"activity": "Run", "score": None}]}, "psfs", "Give 'Run' a score"),
        ("outcome_6wk", {**OK_6WK, "psfs": [{"activity": " ", "score": 3}]}, "psfs", "needs its name"),
        ("outcome_6wk", {**OK_6WK, "psfs": [{"activity": "Run", "score": 1}] * 2}, "psfs", "only once"),
        ("outcome_6wk", {**OK_6WK, "rom": {"measure": "ober_deg", "value": 5}}, "rom", "wblt_cm"),
        ("outcome_6wk", {**OK_6WK, "rom": {"measure": "wblt_cm", "value": 30}}, "rom", "0 to 25 cm"),
        ("outcome_6wk", {**OK_6WK, "rom": 12}, "rom", '"measure": "wblt_cm"'),
        ("outcome_6wk", {**OK_6WK, "redflags": ["none"]}, "redflags", NOT_ASKED),
    ],
)
def test_invalid_answers(step_id: str, data: dict[str, Any], field: str, needle: str) -> None:
    protocol = get_protocol(INJURY)
    with pytest.raises(InvalidAnswers) as invalid:
        validate_answers(data, protocol=protocol, step=protocol.step(step_id), regions_needled=["calf"])
    assert field in invalid.value.errors, invalid.value.errors
    assert needle in invalid.value.errors[field]


@pytest.mark.parametrize(
    ("injury", "step_id", "data", "expected"),
    [
        (INJURY, "check_24h", OK_24H, {"soreness": 3, "redflags": ["none"], "free_text": None}),
        (INJURY, "check_24h", {**OK_24H, "soreness": "7", "fainted": "yes"}, {"soreness": 7, "fainted": True}),
        (INJURY, "check_24h", {**OK_24H, "free_text": "  ok  ", "groc15": None}, {"free_text": "ok"}),
        (INJURY, "check_24h", {**OK_24H, "redflags": ["pus", "pus", "fever"]}, {"redflags": ["pus", "fever"]}),
        (INJURY, "check_72h", {**OK_72H, "groc15": "-7"}, {"groc15": -7, "run_pain": 2}),
        (INJURY, "check_72h", {**OK_72H, "ran": False, "run_pain": None}, {"ran": False, "run_pain": None}),
        (INJURY, "check_72h", {**OK_72H, "bruise": "spreading"}, {"bruise": "spreading"}),
        (INJURY, "check_24h", {**OK_24H, "nprs_worst": "9"}, {"nprs_worst": 9}),
        (INJURY, "check_7d", {**OK_7D, "soreness": "1"}, {"soreness": 1, "nprs_usual": 2}),
        (INJURY, "outcome_6wk", OK_6WK, {"rom": None, "psfs": [{"activity": "Run 5 km", "score": 6}]}),
        (INJURY, "outcome_6wk", {**OK_6WK, "rom": {"measure": "wblt_cm", "value": "7,5"}}, {"rom": 7.5}),
        ("bone_stress_injury", "check_24h", {**OK_24H, "redflags": ["night_pain"]}, {"redflags": ["night_pain"]}),
    ],
)
def test_valid_answers(injury: str, step_id: str, data: dict[str, Any], expected: dict[str, Any]) -> None:
    protocol = get_protocol(injury)
    answers = validate_answers(data, protocol=protocol, step=protocol.step(step_id), regions_needled=["calf"])
    dumped = answers.model_dump()
    for key, value in expected.items():
        got = dumped[key]["value"] if key == "rom" and value is not None else dumped[key]
        assert got == value, (key, got)


def test_psfs_must_re_rate_the_previous_activities() -> None:
    protocol = get_protocol(INJURY)
    step = protocol.step("outcome_6wk")
    data = {**OK_6WK, "psfs": [{"activity": "run  5 KM", "score": 6}, {"activity": "Stairs", "score": 8}]}
    answers = validate_answers(
        data, protocol=protocol, step=step, regions_needled=[], previous_activities=["Stairs", "Run 5 km"]
    )
    assert answers.psfs is not None and len(answers.psfs) == 2
    with pytest.raises(InvalidAnswers, match="same activities"):
        validate_answers(data, protocol=protocol, step=step, regions_needled=[], previous_activities=["Stairs"])


# ---- advice ------------------------------------------------------------------------------------------


def _advice(answers: SurveyAnswers, trunk: bool, injury: str, *, clinic_open: bool = True) -> Advice | None:
    inputs = EvaluationInput.from_answers(
        answers,
        hours_since_session=72 if answers.bruise == "spreading" else 30,
        step_id="check_72h" if answers.bruise == "spreading" else "check_24h",
        injury_slug=injury,
        regions_needled=["thoracic_back"] if trunk else ["calf"],
    )
    return advice_from(evaluate(get_rules(), inputs), clinic_open=clinic_open)


@pytest.mark.parametrize(
    ("answers", "trunk", "injury", "tier"),
    [
        (SurveyAnswers(redflags=["none"], soreness=5, bruise="small"), False, INJURY, None),
        (SurveyAnswers(redflags=["breathless"]), False, INJURY, "EMERGENCY"),
        (SurveyAnswers(redflags=["pain_on_breathing"]), True, INJURY, "EMERGENCY"),
        (SurveyAnswers(redflags=["chest_pain"]), False, INJURY, "EMERGENCY"),
        (SurveyAnswers(redflags=["uncontrolled_bleeding"]), False, INJURY, "EMERGENCY"),
        (SurveyAnswers(redflags=["fainted_after_leaving", "palpitations"]), False, INJURY, "EMERGENCY"),
        (SurveyAnswers(redflags=["fainted_after_leaving", "injury_from_fall"]), False, INJURY, "EMERGENCY"),
        (SurveyAnswers(redflags=["fainted_after_leaving"]), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(redflags=["palpitations"]), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(redflags=["fever"]), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(redflags=["foot_drop"]), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(redflags=["calf_swollen_warm_one_leg"]), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(redflags=["night_pain"]), False, "bone_stress_injury", "SAME_DAY"),
        (SurveyAnswers(redflags=["none"], bruise="large"), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(redflags=["none"], bruise="spreading"), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(nprs_worst=8), False, INJURY, "SAME_DAY"),
        (SurveyAnswers(nprs_worst=7, nprs_usual=9), False, INJURY, None),
        (SurveyAnswers(soreness=7), False, INJURY, "NEXT_BD"),
        (SurveyAnswers(groc15=5), False, INJURY, "INFO"),
    ],
)
def test_advice_tiers(answers: SurveyAnswers, trunk: bool, injury: str, tier: str | None) -> None:
    advice = _advice(answers, trunk, injury)
    assert (advice.tier if advice else None) == tier
    if advice is not None:
        assert advice.message.endswith(SAVED)
        lowered = advice.message.lower()
        for forbidden in ("watch", "monitor", "someone will", "will call you", "reviewing", "right now"):
            assert forbidden not in lowered
        if tier == "EMERGENCY":
            assert advice.title == EMERGENCY_TITLE
            assert "emergency number" in lowered and "do not wait for a reply from the clinic" in lowered
        elif tier == "SAME_DAY":
            assert advice.title == SAME_DAY_TITLE and "urgent care" in lowered


def test_trunk_needling_changes_the_breathing_wording_only() -> None:
    lower = _advice(SurveyAnswers(redflags=["breathless"]), False, INJURY)
    trunk = _advice(SurveyAnswers(redflags=["breathless"]), True, INJURY)
    assert lower is not None and trunk is not None and lower.tier == trunk.tier == "EMERGENCY"
    assert "collapsed lung" in trunk.message and "collapsed lung" not in lower.message


def test_same_day_advice_out_of_hours_points_to_urgent_care_first() -> None:
    open_ = _advice(SurveyAnswers(redflags=["pus"]), False, INJURY, clinic_open=True)
    closed = _advice(SurveyAnswers(redflags=["pus"]), False, INJURY, clinic_open=False)
    assert open_ is not None and closed is not None
    assert open_.title == SAME_DAY_TITLE and CLOSED_NOTE not in open_.message
    assert closed.title == CLOSED_TITLE and CLOSED_NOTE in closed.message
    emergency = _advice(SurveyAnswers(redflags=["breathless"]), False, INJURY, clinic_open=False)
    assert emergency is not None and emergency.title == EMERGENCY_TITLE, "emergency advice never changes with hours"


def test_lenient_answers_keep_only_what_advice_needs() -> None:
    answers = lenient_answers({"redflags": ["breathless", "bogus", 3], "bruise": "huge", "nprs_worst": "9"})
    assert answers.redflags == ["breathless"] and answers.bruise is None and answers.nprs_worst == 9
    assert lenient_answers({"redflags": "breathless"}).redflags == []
