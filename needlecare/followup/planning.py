"""Planning: when a session is recorded, write everything it will cause, before anything is sent.

Per session, in one transaction: claim the session (``planned_at``), attach it to the patient's
injury episode (a new one when none is open), write the aftercare notice row, and one contact row
per protocol step — session steps for every session, episode steps when the session opens an
episode. Every row has a unique key, so planning twice writes nothing twice.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from models import Contact, ContactStatus, Episode, Notification, NotificationStatus, TreatmentSession
from needlecare.core.sql import insert_ignore
from needlecare.followup.protocols import get_protocol

AFTERCARE = "aftercare"
# An episode stays open this long after it starts: long enough for its last outcome window (12 wk ± 10 d).
EPISODE_OPEN_FOR = timedelta(weeks=14)


def aftercare_key(session_id: int) -> str:
    return f"aftercare:session:{session_id}"


def contact_key(scope: str, owner_id: int, step_id: str) -> str:
    return f"{scope}:{owner_id}:{step_id}"


def plan_pending_sessions(db: Session, *, now: datetime, limit: int = 200) -> int:
    """Plan sessions not planned yet; safe to run concurrently (each session is claimed once)."""
    candidates = (
        select(TreatmentSession.id)
        .where(col(TreatmentSession.planned_at).is_(None))
        .order_by(col(TreatmentSession.completed_at))
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    claimed = db.exec(
        update(TreatmentSession)
        .where(col(TreatmentSession.id).in_(candidates.scalar_subquery()), col(TreatmentSession.planned_at).is_(None))
        .values(planned_at=now)
        .returning(col(TreatmentSession.id))
    ).all()
    ids = sorted(row[0] for row in claimed)
    for session_id in ids:
        session = db.get(TreatmentSession, session_id)
        if session is not None:
            _plan_one(db, session, now=now)
    db.commit()
    return len(ids)


def _plan_one(db: Session, session: TreatmentSession, *, now: datetime) -> None:
    sid = _id(session.id)
    episode, opened = _episode_for(db, session)
    session.episode_id = episode.id
    db.add(session)
    protocol = get_protocol(session.injury)
    rows: list[dict[str, Any]] = []
    for step in protocol.steps:
        if step.scope == "episode" and not opened:
            continue
        reference = session.completed_at if step.scope == "session" else episode.started_at
        owner = sid if step.scope == "session" else _id(episode.id)
        rows.append(
            {
                "idempotency_key": contact_key(step.scope, owner, step.id),
                "patient_id": session.patient_id,
                "session_id": sid if step.scope == "session" else None,
                "episode_id": _id(episode.id),
                "injury": session.injury,
                "step_id": step.id,
                "scope": step.scope,
                "safety": step.safety,
                "status": ContactStatus.PLANNED.value,
                "due_at": reference + timedelta(hours=step.offset_hours),
                "window_opens_at": reference + timedelta(hours=step.window_start_hours),
                "window_closes_at": reference + timedelta(hours=step.window_end_hours),
                "protocol_version": protocol.version,
                "created_at": now,
            }
        )
    if rows:
        insert_ignore(db, Contact, rows)
    insert_ignore(
        db,
        Notification,
        [
            {
                "idempotency_key": aftercare_key(sid),
                "kind": AFTERCARE,
                "channel": "email",
                "session_id": sid,
                "patient_id": session.patient_id,
                "status": NotificationStatus.PENDING.value,
                "due_at": now,
                "attempts": 0,
                "sequence": 0,
                "created_at": now,
            }
        ],
    )


def _episode_for(db: Session, session: TreatmentSession) -> tuple[Episode, bool]:
    """The patient's open episode for this injury, or a new one starting at this session."""
    if session.episode_id is not None:
        existing = db.get(Episode, session.episode_id)
        if existing is not None:
            return existing, False
    episode = db.exec(
        select(Episode)
        .where(
            Episode.patient_id == session.patient_id,
            Episode.injury == session.injury,
            Episode.started_at <= session.completed_at,
            Episode.started_at > session.completed_at - EPISODE_OPEN_FOR,
        )
        .order_by(col(Episode.started_at).desc())
    ).first()
    if episode is not None:
        return episode, False
    episode = Episode(
        clinic_id=session.clinic_id,
        patient_id=session.patient_id,
        injury=session.injury,
        started_at=session.completed_at,
        baseline_pain_nprs=session.baseline_pain_nprs,
        baseline_rom_measure=session.baseline_rom_measure,
        baseline_rom_value=session.baseline_rom_value,
    )
    db.add(episode)
    db.flush()
    return episode, True


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - flushed rows have ids
        raise RuntimeError("row has no id after flush")
    return value


def plan_all(db: Session, *, now: datetime, batch: int = 200) -> int:
    """:func:`plan_pending_sessions` batch by batch until none is left; returns how many were planned."""
    total = 0
    while True:
        planned = plan_pending_sessions(db, now=now, limit=batch)
        total += planned
        if planned < batch:
            return total
