"""The cases pages behind the login: the list by tier and age, one case, acknowledge and resolve (CSRF),
and nothing of another clinic's."""

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from models import AuditEvent, Clinic, ClinicCreate, EscalationCase, TreatmentSession
from models.base import utcnow
from needlecare.core import clock
from needlecare.core.settings import Settings
from needlecare.followup.questions import SurveyAnswers
from needlecare.intake.clinics import add_clinic
from needlecare.staff import auth
from needlecare.surveys.responses import record_answer
from needlecare.web.app import create_app
from tests.records import make_contact, make_session

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def client(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    auth.create_user(db, clinic.id, "dana@riverside.example", "Dana Reyes", PASSWORD)
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def login(client: TestClient, email: str = "dana@riverside.example") -> None:
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token, page.text
    done = client.post("/login", data={"email": email, "password": PASSWORD, "csrf": token.group(1), "next": "/cases"})
    assert done.status_code == 303, done.text


def open_case(db: Session, n: int, redflags: list[str]) -> EscalationCase:
    contact = make_contact(db, make_session(db, n), "check_24h")
    answered = record_answer(db, contact, SurveyAnswers(redflags=redflags, soreness=1), channel="web", now=utcnow())
    case = db.get(EscalationCase, answered.outcome.case_id)
    assert case is not None
    return case


def visible(html: str) -> str:
    """The page's text as a reader sees it: no styles, tags or attribute values."""
    html = re.sub(r"<style.*?</style>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def status_text(html: str) -> str:
    match = re.search(r'<p class="notice" role="status" id="confirmation">([^<]*)</p>', html)
    assert match, "no confirmation in a role=status element"
    return match.group(1)


def csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


def test_anonymous_users_are_sent_to_login(client: TestClient) -> None:
    page = client.get("/cases")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/cases")


def test_the_list_shows_open_cases_most_urgent_first(client: TestClient, db: Session) -> None:
    same_day = open_case(db, 1, ["pus"])
    emergency = open_case(db, 2, ["breathless"])
    login(client)
    page = client.get("/cases")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    rows = re.findall(r'data-case="(\d+)"', page.text)
    assert rows == [str(emergency.id), str(same_day.id)]
    assert "Sam Okafor" in page.text
    text = visible(page.text)
    assert "Chest or breathing symptoms" in text and "Possible needle-site infection" in text, "rule titles"
    assert "Emergency" in text and "Same day" in text and "1-day check-in" in text
    for code in ("R2", "R5", "SAME_DAY", "EMERGENCY", "NEXT_BD", "check_24h"):
        assert not re.search(rf"\b{code}\b", text), f"internal code {code!r} shown on /cases"


def test_acknowledge_and_resolve_with_csrf(client: TestClient, db: Session) -> None:
    case = open_case(db, 1, ["pus"])
    login(client)
    page = client.get(f"/cases/{case.id}")
    assert page.status_code == 200 and "Possible needle-site infection" in page.text
    assert "Pus or cloudy fluid" in page.text, "the answers are shown to staff"
    refused = client.post(f"/cases/{case.id}/acknowledge", data={"csrf": "forged"})
    assert refused.status_code == 403
    db.expire_all()
    assert db.get(EscalationCase, case.id).status == "open"  # type: ignore[union-attr]
    done = client.post(f"/cases/{case.id}/acknowledge", data={"csrf": csrf(page.text)})
    assert done.status_code == 303 and done.headers["location"] == f"/cases/{case.id}?done=acknowledged"
    page = client.get(done.headers["location"])
    db.expire_all()
    acknowledged_at = db.get(EscalationCase, case.id).acknowledged_at  # type: ignore[union-attr]
    assert acknowledged_at is not None
    at = clock.local(acknowledged_at, "America/New_York")
    assert status_text(page.text) == f"Case acknowledged at {at:%H:%M}"
    assert '<dd id="case-status">Acknowledged</dd>' in page.text and "Acknowledged by Dana Reyes" in page.text
    assert "Case opened from the patient's answers" in visible(page.text) and "case.opened" not in visible(page.text)
    empty = client.post(f"/cases/{case.id}/resolve", data={"csrf": csrf(page.text), "note": "  "})
    assert empty.status_code == 422 and "note is required" in empty.text
    resolved = client.post(f"/cases/{case.id}/resolve", data={"csrf": csrf(page.text), "note": "Phoned, reviewed."})
    assert resolved.status_code == 303 and resolved.headers["location"] == f"/cases/{case.id}?done=resolved"
    assert status_text(client.get(resolved.headers["location"]).text).startswith("Case resolved at ")
    db.expire_all()
    stored = db.get(EscalationCase, case.id)
    assert stored is not None and stored.status == "resolved" and stored.resolution_note == "Phoned, reviewed."
    actions = db.exec(select(AuditEvent.action).where(AuditEvent.entity_id == str(case.id))).all()
    assert {"case.opened", "case.acknowledged", "case.resolved"} <= set(actions)
    assert str(case.id) in client.get("/cases?show=resolved").text


def test_another_clinics_case_is_not_found(client: TestClient, db: Session) -> None:
    add_clinic(db, ClinicCreate(id="hillside", name="Hillside", email="h@hillside.example"), actor="test")
    auth.create_user(db, "hillside", "lee@hillside.example", "Lee", PASSWORD)
    case = open_case(db, 1, ["pus"])
    login(client, "lee@hillside.example")
    page = client.get(f"/cases/{case.id}")
    assert page.status_code == 404 and "Sam" not in page.text
    listing: Any = client.get("/cases")
    assert f'data-case="{case.id}"' not in listing.text
    posted = client.post(f"/cases/{case.id}/acknowledge", data={"csrf": csrf(listing.text)})
    assert posted.status_code == 404 and "No such case" in posted.text
    db.expire_all()
    assert db.get(EscalationCase, case.id).status == "open"  # type: ignore[union-attr]


def test_the_case_page_speaks_plain_words_and_shows_the_session(client: TestClient, db: Session) -> None:
    case = open_case(db, 1, ["pus", "breathless"])
    login(client)
    page = client.get(f"/cases/{case.id}")
    text = visible(page.text)
    session = re.search(r'<dl id="session-context">(.*?)</dl>', page.text, flags=re.S)
    assert session, page.text
    fields = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)", session.group(1)))
    stored = db.get(TreatmentSession, case.session_id)
    assert stored is not None
    day = clock.local(stored.completed_at, "America/New_York")
    assert fields == {
        "Injury": "Achilles tendinopathy",
        "Side": "Left",
        "Session date": f"{day:%a %d %b %Y}",
        "Practitioner": "Dana Reyes",
    }
    assert "Emergency" in text and "1-day check-in" in text and "Chest or breathing symptoms" in text
    assert "On-call routes for this tier" in text and "Waiting to be sent" in text
    for code in ("R2", "R5", "SAME_DAY", "EMERGENCY", "check_24h", "primary", "pending", "case.opened"):
        assert not re.search(rf"(?<![\w.]){re.escape(code)}(?![\w.])", text), f"internal code {code!r} shown"
    assert 'href="tel:+15551234567">+1 555-123-4567</a>' in page.text
    assert 'role="status"' not in page.text, "no confirmation before any action"


def test_a_hand_typed_confirmation_for_an_action_not_taken_shows_nothing(client: TestClient, db: Session) -> None:
    case = open_case(db, 1, ["pus"])
    login(client)
    page = client.get(f"/cases/{case.id}?done=resolved")
    assert page.status_code == 200 and 'role="status"' not in page.text
    assert client.get(f"/cases/{case.id}?done=<script>").status_code == 200


def test_the_home_page_links_staff_to_their_pages(client: TestClient) -> None:
    page = client.get("/")
    links = set(re.findall(r'href="([^"]+)"', page.text))
    assert {"/cases", "/dashboard", "/undelivered", "/login"} <= links
    assert "/outbox" not in links, "the outbox exists only in development on loopback"


def test_the_non_responder_list_shows_a_phone_number_to_call(client: TestClient, db: Session) -> None:
    make_contact(db, make_session(db), "check_24h")
    login(client)
    page = client.get("/dashboard/nonresponders")
    assert page.status_code == 200, page.text
    row = re.search(r'<tr role="row" data-contact="\d+">(.*?)</tr>', page.text, flags=re.S)
    assert row, page.text
    assert '<a href="tel:+15551234567">+1 555-123-4567</a>' in row.group(1)
