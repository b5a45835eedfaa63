"""Malformed bodies and fields found by probing the ingress and the answers API: every one a clear 4xx,
nothing stored (on SQLite and PostgreSQL)."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import Clinic, TreatmentSession
from needlecare.core.settings import Settings
from needlecare.core.signing import sign
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.factories import event_body

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
