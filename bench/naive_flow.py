"""The naive shape, for the benchmark only: one flow run per event, for that session's notice.

Same row, same idempotency key (``aftercare:session:<id>``) and the same ``outbox.deliver`` as
the product; only the shape differs: nothing is drained, nothing lingers. (It writes the notice
only, not the follow-up contacts the product's planner also writes: a few rows, next to a
process start of seconds.)
"""

from prefect import flow, task
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from models import Notification, NotificationStatus, TreatmentSession
from models.base import utcnow
from needlecare.followup import aftercare, outbox

try:  # the follow-up work moved planning (and the key) out of the outbox
    from needlecare.followup.planning import aftercare_key
except ImportError:  # pragma: no cover - the layout before it
    from needlecare.followup.outbox import aftercare_key  # type: ignore[attr-defined,no-redef]
from needlecare.core import claims
from needlecare.core.db import session_scope
from needlecare.core.settings import get_settings

S = NotificationStatus


def plan_and_claim_one(db: Session, session_id: int) -> claims.Claim | None:
    """Write this session's notice row (if new) and claim it under a token of its own (``outbox.deliver``
    sends only for the claim's holder); the claim, or None if not ours."""
    session = db.get(TreatmentSession, session_id)
    if session is None:
        return None
    now = utcnow()
    key = aftercare_key(session_id)
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.exec(
        insert(Notification)
        .values(
            idempotency_key=key,
            kind=aftercare.TEMPLATE,
            channel="email",
            session_id=session_id,
            patient_id=session.patient_id,
            status=S.PENDING.value,
            due_at=now,
            attempts=0,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    db.exec(
        update(TreatmentSession)
        .where(col(TreatmentSession.id) == session_id, col(TreatmentSession.planned_at).is_(None))
        .values(planned_at=now)
    )
    token = claims.new_token()
    claimed = db.exec(
        update(Notification)
        .where(col(Notification.idempotency_key) == key, col(Notification.status).in_([S.PENDING.value, S.RETRY.value]))
        .values(status=S.SENDING.value, claimed_at=now, claim_token=token, attempts=col(Notification.attempts) + 1)
        .returning(col(Notification.id))
    ).first()
    db.commit()
    return claims.Claim(claimed[0], token) if claimed else None


@task(name="send-one", retries=2, retry_delay_seconds=[2, 10])
def send_one(session_id: int) -> str:
    with session_scope() as db:
        claim = plan_and_claim_one(db, session_id)
        if claim is None:
            return "nothing to do"
        return outbox.deliver(db, claim, now=utcnow(), settings=get_settings()).value


@flow(name="naive-aftercare", log_prints=False)
def naive_aftercare(session_id: int) -> str:
    """Plan and send ONLY this session's aftercare notice."""
    return send_one(session_id)
