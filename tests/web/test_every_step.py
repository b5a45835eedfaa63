"""Every step of every injury's protocol can be answered through the JSON API, with contacts made by
the real planner; the answers land in their columns and the contact is closed."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from models import Clinic, Contact, SurveyResponse
from models.base import utcnow
from needlecare.core.catalogue import get_catalogue
from needlecare.core.settings import Settings
from needlecare.core.tokens import make_token
from needlecare.followup import planning
from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.protocols import get_protocol
from needlecare.intake import ingest
from needlecare.web.app import create_app
from tests.factories import event_body

VALUES: dict[str, Any] = {
    "nprs_usual": 3,
    "nprs_worst": 5,
    "soreness": 2,
    "bruise": "small",
    "groc15": 3,
    "psfs": [{"activity": "Easy 5 km run", "score": 6}],
    "redflags": ["none"],
    "fainted": False,
    "ran": True,
    "run_pain": 2,
    "free_text": "Feeling better.",
}


def _answers(protocol: Protocol, step: Step) -> dict[str, Any]:
    answers = {q: VALUES[q] for q in step.questions if q != "rom"}
    if "rom" in step.questions and protocol.rom_test is not None:
        rom = protocol.rom_test
        answers["rom"] = {"measure": rom.measure, "value": (rom.min + rom.max) / 2}
    return answers


@pytest.mark.parametrize("injury", sorted(get_catalogue().injuries))
def test_every_step_is_answerable_by_api(injury: str, db: Session, clinic: Clinic, settings: Settings) -> None:
    protocol = get_protocol(injury)
    now = utcnow()
    with TestClient(create_app(settings)) as client:
        for n, step in enumerate(protocol.steps, start=1):
            # A session that ended `offset` hours ago, so this step's window is open now.
            completed = now - timedelta(hours=step.offset_hours, minutes=5)
            body = event_body(n, injury=injury, completed_at=completed.isoformat(), baseline__rom=None)
            ingest.record(db, ingest.validate(body), actor="test")
            planning.plan_pending_sessions(db, now=now)
            contact = db.exec(
                select(Contact).where(Contact.step_id == step.id, Contact.injury == injury).order_by(Contact.id.desc())  # type: ignore[union-attr]
            ).first()
            assert contact is not None and contact.id is not None
            token = make_token(
                contact.id,
                contact.patient_id,
                step.id,
                contact.window_closes_at,
                settings.secret_key.get_secret_value(),
            )
            response = client.post(f"/api/v1/surveys/{token}/answers", json=_answers(protocol, step))
            assert response.status_code == 201, (step.id, response.text)
            db.expire_all()
            stored = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact.id)).one()
            assert stored.step_id == step.id and stored.channel == "api"
            if "nprs_usual" in step.questions:
                assert stored.nprs_usual == 3
            if "rom" in step.questions and protocol.rom_test is not None:
                assert stored.rom_measure == protocol.rom_test.measure and stored.rom_value is not None
            assert db.get(Contact, contact.id).status == "answered"  # type: ignore[union-attr]
