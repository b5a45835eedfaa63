"""Rows for survey and escalation tests, made through the real ingest (sessions) or directly (contacts)."""

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from models import Contact, Episode, TreatmentSession
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.core.tokens import make_token
from needlecare.followup.protocols import get_protocol
from needlecare.intake import ingest
from tests.factories import event_body


def make_session(db: Session, n: int = 1, **overrides: Any) -> TreatmentSession:
    result = ingest.record(db, ingest.validate(event_body(n, **overrides)), actor="test")
    session = db.get(TreatmentSession, result.session_id)
    assert session is not None
    if session.episode_id is None:
        episode = Episode(
            clinic_id=session.clinic_id,
            patient_id=session.patient_id,
            injury=session.injury,
            started_at=session.completed_at,
            baseline_pain_nprs=session.baseline_pain_nprs,
        )
        db.add(episode)
        db.flush()
        session.episode_id = episode.id
        db.add(session)
        db.commit()
    return session


def make_contact(
    db: Session,
    session: TreatmentSession,
    step_id: str,
    *,
    status: str = "sent",
    opens: timedelta = timedelta(hours=-2),
    closes: timedelta = timedelta(hours=24),
) -> Contact:
    step = get_protocol(session.injury).step(step_id)
    now = utcnow()
    assert session.episode_id is not None
    contact = Contact(
        idempotency_key=f"{step.scope}:{session.id if step.scope == 'session' else session.episode_id}:{step_id}",
        patient_id=session.patient_id,
        session_id=session.id if step.scope == "session" else None,
        episode_id=session.episode_id,
        injury=session.injury,
        step_id=step_id,
        scope=step.scope,
        safety=step.safety,
        status=status,
        due_at=now + opens + timedelta(hours=1),
        window_opens_at=now + opens,
        window_closes_at=now + closes,
        sent_at=now if status == "sent" else None,
    )
    db.add(contact)
    db.commit()
    return contact


def token_for(contact: Contact, settings: Settings, *, expires_at: datetime | None = None) -> str:
    assert contact.id is not None
    return make_token(
        contact.id,
        contact.patient_id,
        contact.step_id,
        expires_at or contact.window_closes_at,
        settings.secret_key.get_secret_value(),
    )
