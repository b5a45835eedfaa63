"""Planning: when a session is recorded, write everything it will cause, before anything is sent.

Per session, in one transaction: claim the session (``planned_at``), attach it to the patient's
injury episode (a new one when none is open), write the aftercare notice row, and one contact row
per protocol step — session steps for every session, episode steps when the session opens an
episode. Every row has a unique key, so planning twice writes nothing twice.

:func:`expected_sends` says when each planned check-in of a patient will really go out: its due time
moved by the sender's own rules (quiet hours, one survey per patient per local day, superseded by a
newer session, window closing first), so calendars and emails show the time the message is sent.
"""

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from models import Contact, ContactStatus, Episode, Notification, NotificationStatus, Patient, TreatmentSession
from needlecare.core import clock
from needlecare.core.settings import Settings
from needlecare.core.sql import insert_ignore
from needlecare.followup import dispatch
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


# ---- When planned check-ins will really be sent --------------------------------------------------------

SUPERSEDED, WINDOW_CLOSES = "superseded", "window_closes"


@dataclass(frozen=True)
class ExpectedSend:
    """When a planned check-in will go: ``at`` (None: it will not be sent, ``not_sent`` says why: superseded
    by a newer session, or its window closes before the next allowed time)."""

    contact_id: int
    step_id: str
    at: datetime | None
    not_sent: str = ""


def expected_sends(
    db: Session,
    patient_id: int,
    *,
    now: datetime,
    settings: Settings,
    contacts: Sequence[Contact] | None = None,
) -> dict[int, ExpectedSend]:
    """Every planned check-in of the patient → when the sender will open it, as of ``now``.

    The sender's passes are replayed in order: a check-in goes at its due time (or now, if overdue), moved
    past quiet hours by ``clock.next_allowed`` and to the next day by ``clock.start_of_next_day`` when another
    check-in went (or will go) that local day; at one moment safety checks go first, as in
    :func:`dispatch.dispatch_due`. Superseded check-ins (``dispatch.superseded_among``) and those whose window
    closes first are not sent. Assumes the sender runs continuously (a late pass sends later). ``contacts``: every
    contact of the patient, when the caller has read them already."""
    patient = db.get(Patient, patient_id)
    tz = patient.timezone if patient is not None else "UTC"
    start, end = settings.quiet_hours_start, settings.quiet_hours_end
    if contacts is None:
        contacts = db.exec(select(Contact).where(Contact.patient_id == patient_id)).all()
    taken = {clock.local_date(c.sent_at, tz) for c in contacts if c.sent_at is not None}
    out: dict[int, ExpectedSend] = {}
    queue: list[tuple[datetime, bool, datetime, int]] = []
    by_id: dict[int, Contact] = {}
    planned = [c for c in contacts if c.status == ContactStatus.PLANNED.value and c.id is not None]
    superseded = dispatch.superseded_among(db, [c for c in planned if c.scope == "session"])
    for contact in planned:
        if contact.id is None:  # pragma: no cover - filtered above
            continue
        if contact.id in superseded:
            out[contact.id] = ExpectedSend(contact.id, contact.step_id, None, SUPERSEDED)
            continue
        by_id[contact.id] = contact
        heapq.heappush(queue, (max(contact.due_at, now), not contact.safety, contact.due_at, contact.id))
    while queue:
        at, not_safety, _due, cid = heapq.heappop(queue)
        contact = by_id[cid]
        moved = clock.next_allowed(at, tz, start, end)
        if moved == at and clock.local_date(at, tz) in taken:
            moved = clock.start_of_next_day(at, tz, end)
        if moved >= contact.window_closes_at or at >= contact.window_closes_at:
            out[cid] = ExpectedSend(cid, contact.step_id, None, WINDOW_CLOSES)
        elif moved != at:
            heapq.heappush(queue, (moved, not_safety, moved, cid))  # a deferral moves due_at too
        else:
            taken.add(clock.local_date(at, tz))
            out[cid] = ExpectedSend(cid, contact.step_id, at)
    return out
