"""The outbox: one pass plans new sessions, opens due follow-ups, and sends each message at most once.

Exactly once: a notice is a row with a unique idempotency key, written before anything is sent.
A row is claimed atomically (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one conditional UPDATE,
SQLite serialises writers), so two dispatchers never hold the same row. A claim left by a worker
that died mid-send is taken again after ``claim_lease_seconds``: that window is the only place a
notice could go twice, and only if the process died between the SMTP handover and the commit.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from models import AuditEvent, Notification, NotificationStatus
from needlecare.core import claims
from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.core.settings import Settings
from needlecare.followup.delivery import DeliveryError, PermanentDeliveryError, send_email
from needlecare.followup.dispatch import dispatch_due
from needlecare.followup.messages import Defer, Skip, compose
from needlecare.followup.planning import plan_pending_sessions

S = NotificationStatus
_COUNTS = ("planned", "opened", "deferred", "expired", "claimed", "sent", "retried", "failed", "skipped")


@dataclass
class PassResult:
    planned: int = 0
    opened: int = 0
    deferred: int = 0
    expired: int = 0
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    notification_ids: list[int] = field(default_factory=list)

    def add(self, other: "PassResult") -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notification_ids.extend(other.notification_ids)

    @property
    def work_done(self) -> int:
        return self.planned + self.opened + self.claimed

    def summary(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _COUNTS}


def claim_due(db: Session, *, now: datetime, limit: int, lease_seconds: float) -> list[int]:
    """Atomically mark up to ``limit`` due notifications as SENDING for this caller; returns their ids."""
    return claims.claim_due(db, Notification, now=now, limit=limit, lease_seconds=lease_seconds)


def deliver(
    db: Session, notification_id: int, *, now: datetime, settings: Settings, catalogue: Catalogue | None = None
) -> NotificationStatus:
    """Send one claimed message, defer it, or record why not. Returns the row's new status."""
    n = db.get(Notification, notification_id)
    if n is None or n.status != S.SENDING:
        return S(n.status) if n else S.FAILED
    decision = compose(db, n, now=now, settings=settings, catalogue=catalogue or get_catalogue())
    if isinstance(decision, Skip):
        return _finish(db, n, S.SKIPPED, skip_reason=decision.reason)
    if isinstance(decision, Defer):
        n.due_at, n.attempts = decision.until, n.attempts - 1  # a deferral is not an attempt
        return _finish(db, n, S.PENDING)
    try:
        send_email(
            settings.resolved_patient_email_url, decision.to, decision.email, decision.headers, decision.attachments
        )
    except PermanentDeliveryError as exc:
        return _finish(db, n, S.FAILED, error=str(exc))
    except DeliveryError as exc:
        if n.attempts >= settings.delivery_max_attempts:
            return _finish(db, n, S.FAILED, error=f"gave up after {n.attempts} attempts: {exc}")
        delay = settings.delivery_backoff_seconds * 2 ** (n.attempts - 1)
        n.due_at = now + timedelta(seconds=delay)
        return _finish(db, n, S.RETRY, error=str(exc))
    n.sent_at = now
    return _finish(db, n, S.SENT)


def _finish(
    db: Session,
    n: Notification,
    status: NotificationStatus,
    *,
    error: str | None = None,
    skip_reason: str | None = None,
) -> NotificationStatus:
    n.status = status
    n.last_error = error[:2000] if error else n.last_error
    n.skip_reason = skip_reason
    n.claimed_at = None
    db.add(n)
    if status in (S.FAILED, S.SKIPPED):
        db.add(
            AuditEvent(
                actor="outbox",
                action=f"notification.{status.value}",
                entity="notification",
                entity_id=str(n.id),
                detail={"reason": skip_reason or "see last_error"},
            )
        )
    db.commit()
    return status


def run_pass(db: Session, *, now: datetime, settings: Settings, batch: int = 200) -> PassResult:
    """Plan every new session, open every follow-up that is due, and send every message that is due,
    batch by batch (memory stays flat; sending starts with the first batch)."""
    result = PassResult()
    while True:
        planned = plan_pending_sessions(db, now=now, limit=batch)
        result.planned += planned
        if planned < batch:
            break
    catalogue = get_catalogue()
    while True:
        opened = dispatch_due(db, now=now, settings=settings, limit=batch)
        result.opened += opened.opened
        result.deferred += opened.deferred
        result.expired += opened.expired
        result.skipped += opened.skipped
        _send_due(db, result, now=now, settings=settings, catalogue=catalogue, batch=batch)
        if opened.seen < batch or opened.unchanged == opened.seen:
            return result


def _send_due(
    db: Session, result: PassResult, *, now: datetime, settings: Settings, catalogue: Catalogue, batch: int
) -> None:
    ids, statuses = claims.drain(
        db,
        Notification,
        lambda nid: deliver(db, nid, now=now, settings=settings, catalogue=catalogue).value,
        now=now,
        batch=batch,
        lease_seconds=settings.claim_lease_seconds,
    )
    result.claimed += len(ids)
    result.notification_ids.extend(ids)
    result.sent += statuses[S.SENT.value]
    result.retried += statuses[S.RETRY.value]
    result.failed += statuses[S.FAILED.value]
    result.skipped += statuses[S.SKIPPED.value]
