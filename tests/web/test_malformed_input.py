"""Malformed bodies and fields found by probing the ingress and the answers API: every one a clear 4xx,
nothing stored (on SQLite and PostgreSQL)."""

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from sqlmodel import Session, SQLModel, func, select

from models import AuditEvent, Clinic, Contact, Patient, SurveyResponse, TreatmentSession
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.core.signing import sign
from needlecare.core.tokens import make_token
from needlecare.followup.unsubscribe import make_unsubscribe_token
from needlecare.staff import auth
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.factories import event_body
from tests.records import make_contact, make_session

URL = "/api/v1/events/session-completed"


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=True) as c:
        yield c


def _sessions(db: Session) -> int:
    db.expire_all()
    return db.exec(select(func.count()).select_from(TreatmentSession)).one()


def _signed(client: TestClient, raw: bytes) -> Any:
    headers = {"Content-Type": "application/json", "X-Needlecare-Signature": sign(raw, CLINIC_SECRET)}
    return client.post(URL, content=raw, headers=headers)


@pytest.mark.parametrize(
    "zone", ["America", "Europe", "Etc", "posixrules", "../../etc/passwd", "UTC\x00", "America/New_York/x", ""]
)
def test_a_time_zone_that_is_not_a_zone_is_422(client: TestClient, db: Session, zone: str) -> None:
    body = event_body(1)
    body["patient"]["timezone"] = zone
    answer = _signed(client, json.dumps(body).encode())
    assert answer.status_code == 422, answer.text
    assert "timezone" in answer.text  # the field is named, with what is wrong
    assert _sessions(db) == 0


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested more than"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested more than"),
        (b'{"clinic_id": "\\ud800"}', "unpaired surrogate"),
        (b'{"clinic_id": "a\\u0000b"}', "NUL"),
        (b'{"clinic_id": NaN}', "not a number JSON allows"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"clinic_id": ', "not valid JSON"),
    ],
)
def test_malformed_bodies_are_422_even_unsigned(client: TestClient, db: Session, raw: bytes, says: str) -> None:
    answer = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert says in answer.text
    assert _sessions(db) == 0


@pytest.mark.parametrize(
    "raw", [b"[" * 1000 + b"]" * 1000, b'{"soreness": "\\udfff"}', b'{"free_text": "x\\u0000"}', b"\xc3\x28"]
)
def test_the_answers_api_refuses_malformed_bodies(client: TestClient, raw: bytes) -> None:
    answer = client.post(
        "/api/v1/surveys/not-a-token/answers", content=raw, headers={"Content-Type": "application/json"}
    )
    assert 400 <= answer.status_code < 500, answer.text


def test_an_oversized_chunked_body_is_refused_while_it_streams(client: TestClient, db: Session) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(256):  # 4 MiB in 16 KiB chunks, with no Content-Length
            yield b"x" * 16384

    answer = client.post(URL, content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "exceeds 65536 bytes" in answer.text
    assert _sessions(db) == 0


@pytest.mark.parametrize("path", [URL, "/api/v1/surveys/not-a-token/answers", "/s/not-a-token", "/login"])
def test_a_declared_oversized_body_is_refused_before_reading(client: TestClient, path: str) -> None:
    answer = client.post(
        path,
        content=b"a=" + b"x" * 70000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


# ---- found by fuzzing every endpoint (tests/web/test_schemathesis.py and by hand): each was a 500 -------------


PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _rows(db: Session) -> dict[str, int]:
    db.expire_all()
    tables: tuple[type[SQLModel], ...] = (TreatmentSession, Patient, Contact, SurveyResponse, AuditEvent)
    return {t.__name__: db.exec(select(func.count()).select_from(t)).one() for t in tables}


def _refused(answer: Any, status: int | None = None) -> None:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    if status is not None:
        assert answer.status_code == status, answer.text[:300]
    assert "detail" in answer.text or "<h1>" in answer.text


@pytest.fixture
def staff(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    """A client logged in as a practitioner of the test clinic."""
    auth.create_user(db, clinic.id, "dana@riverside.example", "Dana Reyes", PASSWORD)
    with TestClient(create_app(settings), raise_server_exceptions=True, follow_redirects=False) as c:
        page = c.get("/login")
        token = CSRF.search(page.text)
        assert token, page.text
        form = {"email": "dana@riverside.example", "password": PASSWORD, "csrf": token.group(1), "next": "/cases"}
        assert c.post("/login", data=form).status_code == 303
        yield c


@pytest.mark.parametrize(
    "raw",
    [b'{"soreness": ' + b"9" * 5000 + b"}", b'{"soreness": 1e400}', b'{"soreness": 9007199254740993}'],
    ids=["5000-digit integer", "float overflow", "beyond 2^53"],
)
def test_the_answers_api_refuses_numbers_out_of_range(client: TestClient, db: Session, raw: bytes) -> None:
    contact = make_contact(db, make_session(db, 1), "check_24h")
    before = _rows(db)
    answer = client.post(
        f"/api/v1/surveys/{_survey_token(contact.id, contact.patient_id, client)}/answers",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    _refused(answer, 422)
    assert _rows(db) == before


@pytest.mark.parametrize("path", ["/u/\u00b2.abc", "/u/" + "1" * 5000 + ".abc", "/u/1\u0660.abc"])
def test_an_unsubscribe_link_with_digits_int_cannot_read_is_refused(client: TestClient, path: str) -> None:
    for method in ("GET", "POST"):
        _refused(client.request(method, path))


def _secret(client: TestClient) -> str:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    return settings.secret_key.get_secret_value()


def _survey_token(contact_id: int | None, patient_id: int, client: TestClient) -> str:
    assert contact_id is not None
    return make_token(contact_id, patient_id, "check_24h", utcnow() + timedelta(days=1), _secret(client))


@pytest.mark.parametrize("row_id", [2**31, 2**63, 10**30], ids=["beyond INTEGER", "beyond BIGINT", "beyond all"])
def test_signed_links_naming_ids_beyond_the_columns_are_refused(client: TestClient, db: Session, row_id: int) -> None:
    """Links made with the app's key (the development key is published) whose ids no column can hold: PostgreSQL
    refused 2^31 (its INTEGER), SQLite 2^63; both were a 500."""
    make_session(db, 1)
    before = _rows(db)
    survey = _survey_token(row_id, row_id, client)
    _refused(client.get(f"/s/{survey}"))
    _refused(client.post(f"/s/{survey}", data={"soreness": "1"}))
    _refused(client.post(f"/api/v1/surveys/{survey}/answers", json={"soreness": 1}))
    unsubscribe = make_unsubscribe_token(row_id, _secret(client))
    _refused(client.get(f"/u/{unsubscribe}"))
    _refused(client.post(f"/u/{unsubscribe}"))
    assert _rows(db) == before


@pytest.mark.parametrize(
    "path",
    [
        "/cases/2147483648",
        "/cases/9223372036854775808",
        "/cases/99999999999999999999",
        "/dashboard?until=9999-12-31",
        "/dashboard/export.csv?until=9999-12-31",
        "/dashboard?page=\u00b2",
        "/dashboard?days=\u00b2",
        "/dashboard?practitioner=\u00b2",
        "/dashboard?practitioner=" + "9" * 5000,
        "/dashboard/nonresponders?page=\u00b2",
    ],
)
def test_staff_pages_refuse_ids_and_dates_out_of_range(staff: TestClient, db: Session, path: str) -> None:
    before = _rows(db)
    _refused(staff.get(path, headers={"Accept": "text/html"}))
    assert _rows(db) == before


@pytest.mark.parametrize(
    "path", ["/s/a%00b", "/u/%ff%fe", "/s/%ED%A0%80", "/login?next=%00", "/cases?show=%C3%28", "/s/a%01b"]
)
def test_urls_that_are_not_clean_utf8_text_are_400(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400, answer.text
    assert "path" in answer.text or "query string" in answer.text


@pytest.mark.parametrize(
    ("form", "says"),
    [(b"soreness=1&free_text=a%00b", "NUL"), (b"soreness=%ff", "not UTF-8"), (b"free_text=%ED%A0%80", "not UTF-8")],
)
def test_forms_that_are_not_clean_text_are_400_and_store_nothing(
    client: TestClient, db: Session, form: bytes, says: str
) -> None:
    contact = make_contact(db, make_session(db, 1), "check_24h")
    before = _rows(db)
    for path in (f"/s/{_survey_token(contact.id, contact.patient_id, client)}", "/login"):
        answer = client.post(path, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 400 and says in answer.text, answer.text
    assert _rows(db) == before


def _stream(app: Any, path: str, content_type: bytes, chunks: int = 1024) -> tuple[int, int]:
    """POST ``chunks`` × 16 KiB to ``app`` as a chunked body (no Content-Length), straight through ASGI: the
    answer's status and how many chunks the app had pulled when it answered."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < chunks:
            pulled += 1
            return {"type": "http.request", "body": b"x" * 16384, "more_body": pulled < chunks}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", content_type), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    return status, pulled


@pytest.mark.parametrize("path", [URL, "/api/v1/surveys/x/answers", "/s/x", "/login", "/healthz", "/u/1.abc"])
@pytest.mark.parametrize("content_type", [b"application/json", b"application/x-www-form-urlencoded"])
def test_every_route_refuses_an_oversized_body_while_it_streams(
    settings: Settings, clinic: Clinic, path: str, content_type: bytes
) -> None:
    status, pulled = _stream(create_app(settings), path, content_type)
    # 64 KiB is four chunks and a byte: the other 16 MiB stay unread. A route that takes no body answers
    # without reading it (405 for /healthz, 404 for an unknown unsubscribe link).
    assert status == 413 or (status in (404, 405) and pulled <= 1), (status, pulled)
    assert pulled <= 5


@pytest.mark.parametrize("path", [URL, "/healthz", "/u/1.abc", "/logout", "/cases/1/resolve"])
def test_a_declared_oversized_body_is_refused_on_every_route(client: TestClient, path: str) -> None:
    declared = client.post(path, content=b"x" * 70000, headers={"Content-Type": "application/octet-stream"})
    assert declared.status_code == 413 and "exceeds 65536 bytes" in declared.text


def test_an_unexpected_error_is_a_500_without_request_data(
    settings: Settings, clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    async def broken(request: Request) -> None:
        name = (await request.json())["name"]
        raise RuntimeError(f"lookup failed for {name}")

    app.add_api_route("/broken", broken, methods=["POST"])
    with TestClient(app, raise_server_exceptions=True) as c, caplog.at_level(logging.INFO):
        answer = c.post("/broken", json={"name": "Alice Jones"}, headers={"Accept": "text/html"})
    assert answer.status_code == 500 and "Reference:" in answer.text
    assert "Alice" not in answer.text and "lookup failed" not in answer.text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("needlecare")]
    assert any("RuntimeError" in line for line in ours), ours
    assert not any("Alice" in line or "lookup failed" in line for line in ours), ours
