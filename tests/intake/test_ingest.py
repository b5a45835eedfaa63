import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, func, select

from models import AuditEvent, Clinic, Patient, Practitioner, TreatmentSession
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core import events
from needlecare.intake import ingest
from tests.factories import event_body


def _count(db: Session, model: type) -> int:
    return db.exec(select(func.count()).select_from(model)).one()


def test_valid_session_is_stored_once_with_patient_and_practitioner(
    db: Session, clinic: Clinic, emitted: list[events.AppEvent]
) -> None:
    body = ingest.validate(event_body())
    first = ingest.record_and_emit(db, body, actor="test")
    again = ingest.record_and_emit(db, body, actor="test")
    assert first.created and first.status == "accepted"
    assert not again.created and again.status == "duplicate" and again.session_id == first.session_id
    assert (_count(db, TreatmentSession), _count(db, Patient), _count(db, Practitioner)) == (1, 1, 1)
    stored = db.get(TreatmentSession, first.session_id)
    assert stored is not None and stored.regions_needled == ["calf"] and stored.baseline_rom_value == 7.5
    assert stored.completed_at.tzinfo is not None and stored.planned_at is None
    assert [e.payload for e in emitted] == [{"session_id": first.session_id, "clinic_id": "riverside-physio"}]
    assert emitted[0].resource_id == f"needlecare.session.{first.session_id}"
    assert _count(db, AuditEvent) >= 2  # clinic added + session recorded


def test_a_second_session_updates_the_patient_contact_details(db: Session, clinic: Clinic) -> None:
    ingest.record(db, ingest.validate(event_body(1)), actor="test")
    changed = event_body(2, patient__email="sam.new@example.org", patient__consent={"email": False})
    changed["patient"]["external_id"] = "PT-1"
    ingest.record(db, ingest.validate(changed), actor="test")
    patient = db.exec(select(Patient)).one()
    assert patient.email == "sam.new@example.org" and patient.consent_email is False
    assert _count(db, TreatmentSession) == 2


def test_concurrent_duplicates_store_one_session(db_url: str, clinic: Clinic) -> None:
    body = ingest.validate(event_body())
    results: list[ingest.Recorded] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        try:
            with Session(database.get_engine(db_url)) as own:
                barrier.wait()
                results.append(ingest.record(own, body, actor="test"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.created for r in results) == 1
    assert len({r.session_id for r in results}) == 1
    with Session(database.get_engine(db_url)) as check:
        assert _count(check, TreatmentSession) == 1 and _count(check, Patient) == 1


@pytest.mark.parametrize(
    ("overrides", "loc", "fragment"),
    [
        ({"injury": "tennis_elbow"}, ("injury",), "allowed: achilles_tendinopathy"),
        ({"side": "up"}, ("side",), "'left', 'right' or 'both'"),
        ({"regions_needled": []}, ("regions_needled",), "at least 1 item"),
        ({"regions_needled": ["calf", "elbow"]}, ("regions_needled", 1), "unknown region 'elbow'"),
        ({"completed_at": "2026-11-22T14:30:00"}, ("completed_at",), "time zone offset"),
        ({"completed_at": "yesterday"}, ("completed_at",), "datetime"),
        ({"patient__email": "not-an-email"}, ("patient", "email"), "email address"),
        ({"patient__phone": "555-1234"}, ("patient", "phone"), "E.164"),
        ({"patient__timezone": "Mars/Olympus"}, ("patient", "timezone"), "IANA time zone"),
        ({"patient__first_name": ""}, ("patient", "first_name"), "at least 1 character"),
        ({"baseline__pain_nprs": 11}, ("baseline", "pain_nprs"), "less than or equal to 10"),
        ({"baseline__rom": {"measure": "ober_deg", "value": 1}}, ("baseline", "rom", "measure"), "allowed: wblt_cm"),
        ({"baseline__rom": {"measure": "wblt_cm", "value": 80}}, ("baseline", "rom", "value"), "outside 0 to 25 cm"),
        ({"external_session_id": "has space"}, ("external_session_id",), "pattern"),
    ],
)
def test_invalid_fields_are_named_with_what_is_allowed(
    overrides: dict[str, object], loc: tuple[object, ...], fragment: str
) -> None:
    with pytest.raises(ingest.InvalidSession) as info:
        ingest.validate(event_body(**overrides))  # type: ignore[arg-type]
    problems = {p.loc: p.msg for p in info.value.problems}
    assert loc in problems, problems
    assert fragment in problems[loc]


def test_future_completion_time_is_refused() -> None:
    future = (utcnow() + timedelta(hours=2)).isoformat()
    with pytest.raises(ingest.InvalidSession, match="completed_at: is in the future"):
        ingest.validate(event_body(completed_at=future))


def test_unknown_clinic_and_bad_json(db: Session, clinic: Clinic) -> None:
    with pytest.raises(ingest.InvalidSession, match="unknown clinic 'nope'"):
        ingest.find_clinic(db, event_body(clinic_id="nope"))
    with pytest.raises(ingest.InvalidSession, match="clinic_id: required"):
        ingest.find_clinic(db, {})
    with pytest.raises(ingest.InvalidSession, match="not valid JSON"):
        ingest.parse_json(b"{nope")
    with pytest.raises(ingest.InvalidSession, match="must be a JSON object"):
        ingest.parse_json(b"[1, 2]")
    assert _count(db, TreatmentSession) == 0


def test_unknown_names_are_reported_with_the_structural_problems() -> None:
    body = event_body(1)
    body["injury"] = "broken_leg"
    body["regions_needled"] = ["calf", "elbow"]
    body["patient"]["timezone"] = "Mars/Base"
    body["baseline"]["pain_nprs"] = 14
    with pytest.raises(ingest.InvalidSession) as caught:
        ingest.validate(body)
    locs = [p.loc for p in caught.value.problems]
    assert set(locs) == {("patient", "timezone"), ("baseline", "pain_nprs"), ("injury",), ("regions_needled", 1)}
    assert len(locs) == 4
    injury = next(p for p in caught.value.problems if p.loc == ("injury",))
    assert "unknown injury 'broken_leg'; allowed: achilles_tendinopathy" in injury.msg


def test_a_wrongly_typed_injury_is_reported_once() -> None:
    body = event_body(1)
    body["injury"] = 7
    body["regions_needled"] = "calf"
    with pytest.raises(ingest.InvalidSession) as caught:
        ingest.validate(body)
    locs = [p.loc for p in caught.value.problems]
    assert locs.count(("injury",)) == 1 and ("regions_needled",) in locs
