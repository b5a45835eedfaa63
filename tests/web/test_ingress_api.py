"""The ingress endpoint through the real app (FastAPI TestClient), on SQLite and PostgreSQL."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import Clinic, Patient, TreatmentSession
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.core.signing import sign
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE, event_body

URL = "/api/v1/events/session-completed"


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def post(
    client: TestClient, body: dict[str, Any] | bytes, secret: str = CLINIC_SECRET, signature: str | None = None
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Needlecare-Signature": signature if signature is not None else sign(raw, secret),
    }
    return client.post(URL, content=raw, headers=headers)


def _sessions(db: Session) -> int:
    db.expire_all()
    return db.exec(select(func.count()).select_from(TreatmentSession)).one()


def test_accepted_then_duplicate(client: TestClient, db: Session, emitted: list[events.AppEvent]) -> None:
    first = post(client, event_body())
    assert first.status_code == 202
    assert first.json() == {"session_id": first.json()["session_id"], "status": "accepted"}
    second = post(client, event_body())
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert second.json()["session_id"] == first.json()["session_id"]
    assert _sessions(db) == 1 and len(emitted) == 1
    dumped = json.dumps([events.describe(e) for e in emitted])
    for private in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE):
        assert private not in dumped


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, "md5=abc"])
def test_bad_signature_is_401_and_stores_nothing(client: TestClient, db: Session, signature: str) -> None:
    response = post(client, event_body(), signature=signature)
    assert response.status_code == 401
    assert "X-Needlecare-Signature" in response.json()["detail"]
    assert _sessions(db) == 0


def test_signed_with_another_clinics_secret_is_401(client: TestClient, db: Session) -> None:
    assert post(client, event_body(), secret="whsec_someone_else").status_code == 401
    assert _sessions(db) == 0


def test_a_secret_from_settings_overrides_the_database(settings: Settings, clinic: Clinic, db: Session) -> None:
    from pydantic import SecretStr

    overridden = settings.model_copy(update={"webhook_secrets": {"riverside-physio": SecretStr("from-vault")}})
    with TestClient(create_app(overridden)) as c:
        assert post(c, event_body(), secret=CLINIC_SECRET).status_code == 401
        assert post(c, event_body(), secret="from-vault").status_code == 202


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (event_body(injury="tennis_elbow"), ["body", "injury"]),
        (event_body(clinic_id="unknown-clinic"), ["body", "clinic_id"]),
        (event_body(baseline__pain_nprs=-1), ["body", "baseline", "pain_nprs"]),
        (event_body(patient__timezone="Nowhere/Town"), ["body", "patient", "timezone"]),
        (b"{not json", ["body"]),
        (b"", ["body"]),
        (b"\xff\xfe", ["body"]),
        (b'"a string"', ["body"]),
        (b"{}", ["body", "clinic_id"]),
        (json.dumps({"clinic_id": ["x"]}).encode(), ["body", "clinic_id"]),
    ],
)
def test_invalid_bodies_are_422_with_the_field_path(
    client: TestClient, db: Session, body: dict[str, Any] | bytes, loc: list[str]
) -> None:
    response = post(client, body)
    assert response.status_code == 422, response.text
    locs = [d["loc"] for d in response.json()["detail"]]
    assert loc in locs
    assert all(d["msg"] for d in response.json()["detail"])
    assert _sessions(db) == 0
    db.expire_all()
    assert db.exec(select(func.count()).select_from(Patient)).one() == 0, "nothing half-stored"


def test_oversized_body_is_413(client: TestClient) -> None:
    assert post(client, b"{" + b" " * 70_000 + b"}").status_code == 413


def test_wrong_types_deep_in_the_body_never_500(client: TestClient) -> None:
    for body in (
        event_body(patient="not an object"),
        event_body(regions_needled="calf"),
        event_body(baseline__rom={"measure": "wblt_cm", "value": "far"}),
        event_body(muscles_needled=["x" * 100]),
        event_body(patient__consent={"email": "maybe"}),
        event_body(completed_at=12),
    ):
        assert post(client, body).status_code == 422


def test_outbox_is_development_only(settings: Settings, clinic: Clinic) -> None:
    with TestClient(create_app(settings.model_copy(update={"env": "development"}))) as dev:
        assert dev.get("/outbox.json").status_code == 200
        assert dev.get("/outbox").status_code == 200
        assert dev.get("/outbox/../../etc/passwd").status_code == 404
    prod = settings.model_copy(update={"env": "production"})
    with TestClient(create_app(prod)) as c:
        assert c.get("/outbox.json").status_code == 404
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
