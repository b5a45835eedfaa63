"""Patients' phone numbers: read with phonenumbers in the clinic's region, stored in E.164, refused with a 422
naming the field and the fix (nothing stored) — through the real ingress app, on SQLite and PostgreSQL."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import Clinic, Patient, TreatmentSession
from needlecare.core.settings import Settings
from needlecare.intake import ingest
from needlecare.web.app import create_app
from tests.factories import event_body
from tests.web.test_ingress_api import post


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _stored_phone(db: Session) -> str | None:
    db.expire_all()
    return db.exec(select(Patient.phone)).one()


def _region(db: Session, clinic: Clinic, region: str | None) -> None:
    clinic.region = region
    db.add(clinic)
    db.commit()


@pytest.mark.parametrize(
    ("region", "given", "stored"),
    [
        ("GB", "020 7946 0958", "+442079460958"),
        ("US", "(202) 555-0143", "+12025550143"),
        ("US", "+44 7700 900123", "+447700900123"),  # with '+': no region needed, possible is enough
        (None, "020 7946 0958", "+442079460958"),  # no clinic region: settings.sms_default_region (GB)
        ("GB", "+15551234567", "+15551234567"),  # the E.164 form keeps working
    ],
)
def test_a_number_is_read_in_the_clinics_region_and_stored_in_e164(
    client: TestClient, db: Session, clinic: Clinic, region: str | None, given: str, stored: str
) -> None:
    _region(db, clinic, region)
    response = post(client, event_body(patient__phone=given))
    assert response.status_code == 202, response.text
    assert _stored_phone(db) == stored


@pytest.mark.parametrize(
    ("region", "given", "why"),
    [
        ("US", "07700 900123", "too long for its country"),  # a UK mobile read as a US number
        ("GB", "1234", "too short for its country"),
        ("US", "555 0143", "too short for its country (no area code?)"),
        ("GB", "+4477009001234567", "too long for its country"),
        ("GB", "call me", "must be a phone number"),
        ("GB", "555-1234", "not a number in use in GB"),
        ("GB", "07700 900123", "not a number in use in GB"),  # the fictional range: give it with +44
    ],
)
def test_a_number_that_is_not_possible_is_a_422_naming_the_field_and_the_fix(
    client: TestClient, db: Session, clinic: Clinic, region: str, given: str, why: str
) -> None:
    _region(db, clinic, region)
    response = post(client, event_body(patient__phone=given))
    assert response.status_code == 422, response.text
    [problem] = [p for p in response.json()["detail"] if p["loc"] == ["body", "patient", "phone"]]
    assert why in problem["msg"] and "E.164" in problem["msg"]
    assert given not in response.text or given == "call me"  # the number is not echoed back
    db.expire_all()
    assert db.exec(select(func.count()).select_from(TreatmentSession)).one() == 0
    assert db.exec(select(func.count()).select_from(Patient)).one() == 0


def test_validate_reads_in_the_default_region_when_none_is_given() -> None:
    body = ingest.validate(event_body(patient__phone="020 7946 0958"))
    assert body.patient.phone == "+442079460958"
    with pytest.raises(ingest.InvalidSession, match=r"patient\.phone: is not a possible phone number"):
        ingest.validate(event_body(patient__phone="020 7946 0958"), region="US")
