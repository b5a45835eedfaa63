"""Atomic claims on an outbox table (patient notifications and practitioner alerts share the shape).

A row is claimed atomically (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one conditional UPDATE, SQLite
serialises writers), so two dispatchers never hold the same row. A claim left by a worker that died
mid-send is taken again after ``lease_seconds``.
"""

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from models import Alert, Notification

PENDING, RETRY, SENDING = "pending", "retry", "sending"


def claim_due(
    db: Session, model: type[Notification] | type[Alert], *, now: datetime, limit: int, lease_seconds: float
) -> list[int]:
    """Mark up to ``limit`` due rows of ``model`` as sending for this caller; returns their ids. Commits."""
    stale = now - timedelta(seconds=lease_seconds)
    due = or_(
        and_(col(model.status).in_([PENDING, RETRY]), col(model.due_at) <= now),
        and_(col(model.status) == SENDING, col(model.claimed_at) < stale),
    )
    candidates = select(model.id).where(due).order_by(col(model.due_at)).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    stmt = (
        update(model)
        .where(col(model.id).in_(candidates.scalar_subquery()), due)
        .values(status=SENDING, claimed_at=now, attempts=col(model.attempts) + 1)
        .returning(col(model.id))
    )
    ids = [row[0] for row in db.exec(stmt).all()]
    db.commit()
    return sorted(ids)


def drain(
    db: Session,
    model: type[Notification] | type[Alert],
    deliver: Callable[[int], str],
    *,
    now: datetime,
    batch: int,
    lease_seconds: float,
) -> tuple[list[int], Counter[str]]:
    """Claim due rows batch by batch and hand each to ``deliver`` (which returns the row's new status),
    until none is left. Returns the ids handled and how many ended in each status."""
    handled: list[int] = []
    statuses: Counter[str] = Counter()
    while True:
        ids = claim_due(db, model, now=now, limit=batch, lease_seconds=lease_seconds)
        for row_id in ids:
            statuses[str(deliver(row_id))] += 1
            handled.append(row_id)
        if len(ids) < batch:
            return handled, statuses
