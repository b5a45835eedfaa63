"""The outbox: one pass plans new sessions, opens due follow-ups, and sends each message at most once.

Exactly once: a notice is a row with a unique idempotency key, written before anything is sent. Rows are
claimed a few at a time under a token and a short lease (``needlecare.core.claims``); the lease is renewed
while a send is in progress, and the outcome is written only if the claim is still this pass's, so a pass
that lost its claim neither records nor sends again. A transient failure is retried with capped, jittered
backoff while the message is still useful (``messages.useful_until``), then it is final; the first send of a
pass that goes through makes every waiting retry due at once (the route is back). The outcome write is
retried through a database outage, with the lease still renewed. What remains possible, and counted in
``ambiguous_attempts``: a send whose reply never came, and a sender killed (or cut off from the database for
longer than the outcome write waits) between the SMTP server's acceptance and its commit — both may have been
delivered and are sent again with the same ``Message-ID``.

A pass sends on a bounded pool of SENDER_CONCURRENCY threads (``needlecare.followup.senders``), each message in
a session of its own; each provider gets at most its route's limit of messages at once (``routes``), and a
sender keeps its SMTP connection for its next message (``smtpconn``). :func:`consume` is the warm path: passes
one poll apart for as long as it is asked to stay up.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, update
from sqlmodel import Session, col

from models import AuditEvent, Notification, NotificationStatus, Patient
from models.base import utcnow
from needlecare.core import claims
from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.core.db import session_scope
from needlecare.core.receipts import Receipt
from needlecare.core.settings import Settings
from needlecare.followup import routes, senders, undelivered
from needlecare.followup.delivery import DeliveryError, failure_outcome, send_email
from needlecare.followup.dispatch import Note, dispatch_due
from needlecare.followup.messages import ComposeSms, Defer, Skip, compose, message_id, useful_until
from needlecare.followup.planning import plan_all
from needlecare.followup.sms import send_sms

S = NotificationStatus
_COUNTS = (
    "planned",
    "opened",
    "deferred",
    "expired",
    "claimed",
    "sent",
    "retried",
    "failed",
    "skipped",
    "pulled_forward",
)


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
    pulled_forward: int = 0  # retries made due at once because a send showed the route works again
    notification_ids: list[int] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # every message not sent in this pass, and why

    def add(self, other: "PassResult") -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notification_ids.extend(other.notification_ids)
        self.notes.extend(other.notes)

    @property
    def work_done(self) -> int:
        return self.planned + self.opened + self.claimed

    def summary(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _COUNTS}


def due_count(db: Session, *, now: datetime, lease_seconds: float) -> int:
    """Messages a pass would claim now (pending or retrying and due, or left by a sender whose lease ran out)."""
    return claims.due_count(db, Notification, now=now, lease_seconds=lease_seconds)


def keep_polling(db: Session, *, now: datetime, settings: Settings, idle_seconds: float, linger_seconds: float) -> bool:
    """Whether a draining run that has found nothing to do for ``idle_seconds`` should poll again: during its
    linger, and beyond it (for up to two leases) while another sender holds claims — if that sender has died,
    its messages are taken over as soon as its lease runs out instead of at the next scheduled pass."""
    if idle_seconds < linger_seconds:
        return True
    lease = settings.claim_lease_seconds
    if idle_seconds >= linger_seconds + 2 * lease:
        return False
    return claims.live_count(db, Notification, now=now, lease_seconds=lease) > 0


def claim_due(db: Session, *, now: datetime, limit: int, lease_seconds: float) -> list[int]:
    """Atomically mark up to ``limit`` due notifications as SENDING for this caller; returns their ids."""
    return claims.claim_due(db, Notification, now=now, limit=limit, lease_seconds=lease_seconds)


def deliver(
    db: Session,
    claim: claims.Claim | int,
    *,
    now: datetime,
    settings: Settings,
    catalogue: Catalogue | None = None,
    clock: claims.PassClock | None = None,
) -> NotificationStatus:
    """Send one claimed message (by the channel compose picked: email, or a text through the SMS route),
    defer it, or record why not; the row records the channel used. Returns the row's new status
    (``sending`` when this caller turned out not to hold the claim any more: nothing was sent or recorded)."""
    clock = clock or claims.PassClock(now)
    n = db.get(Notification, claim if isinstance(claim, int) else claim.id)
    if n is None or n.status != S.SENDING:
        return S(n.status) if n else S.FAILED
    if isinstance(claim, int):
        claim = claims.Claim(claim, n.claim_token or "")
    receipt = claims.receipt(db, Notification, n, settings.resolved_receipts_dir)
    accepted_at = receipt.accepted_at()
    if accepted_at is not None:  # the last sender stopped after the server accepted it, before recording that
        fields = claims.receipt_values(n, accepted_at)
        return _record_sent(db, n, claim, receipt, claims.FROM_RECEIPT, fields)
    decision = compose(db, n, now=now, settings=settings, catalogue=catalogue or get_catalogue())
    if isinstance(decision, Skip):
        return _finish(db, n, claim, S.SKIPPED, skip_reason=decision.reason)
    if isinstance(decision, Defer):  # a deferral is not an attempt
        return _finish(db, n, claim, S.PENDING, fields={"due_at": decision.until, "attempts": n.attempts - 1})
    if not claims.begin_send(db, Notification, claim, now=clock.now()):
        return S.SENDING  # another sender holds it now
    lease = settings.claim_lease_seconds
    error: str | None = None
    used: dict[str, object] = {"channel": "sms" if isinstance(decision, ComposeSms) else "email"}
    with claims.held(db.get_bind(), Notification, claim, clock=clock, lease_seconds=lease):
        try:
            if isinstance(decision, ComposeSms):
                send_sms(
                    decision.route,
                    decision.to,
                    decision.text,
                    timeout_seconds=settings.delivery_timeout_seconds,
                    on_accepted=lambda: receipt.write(clock.now()),
                )
            else:
                send_email(
                    settings.resolved_patient_email_url,
                    decision.to,
                    decision.email,
                    decision.headers,
                    decision.attachments,
                    message_id=message_id(n, settings),
                    timeout_seconds=settings.delivery_timeout_seconds,
                    on_accepted=lambda: receipt.write(clock.now()),
                )
        except DeliveryError as exc:
            if (accepted_at := receipt.accepted_at()) is not None:  # accepted; what failed came afterwards
                return _record_sent(db, n, claim, receipt, None, {"sent_at": accepted_at, **used})
            final, reason, values = failure_outcome(
                exc,
                attempts=n.attempts,
                ambiguous_attempts=n.ambiguous_attempts,
                now=clock.now(),
                useful_until=useful_until(db, n, settings),
                settings=settings,
            )
            status, error, fields = (S.FAILED if final else S.RETRY), reason, values | used
        else:
            status, fields = S.SENT, {"sent_at": clock.now(), **used}
        # The lease is still renewed while the outcome is written, through a database outage if need be.
        if status == S.SENT:
            return _record_sent(db, n, claim, receipt, None, fields)
        return claims.persist(db, lambda: _finish(db, n, claim, status, error=error, fields=fields))


def _record_sent(
    db: Session,
    n: Notification,
    claim: claims.Claim,
    receipt: Receipt,
    note: str | None,
    fields: dict[str, object],
) -> NotificationStatus:
    """Record the message sent; its receipt goes once that is committed by this caller. (A caller that lost
    the claim leaves the receipt for the row's new holder, which then records it instead of sending again.)"""
    status = claims.persist(db, lambda: _finish(db, n, claim, S.SENT, error=note, fields=fields))
    if status == S.SENT:
        receipt.remove()
    return status


def _finish(
    db: Session,
    n: Notification,
    claim: claims.Claim,
    status: NotificationStatus,
    *,
    error: str | None = None,
    skip_reason: str | None = None,
    fields: dict[str, object] | None = None,
) -> NotificationStatus:
    """Record the outcome if this caller still holds the claim (else nothing, and ``sending`` is returned)."""
    values = {**(fields or {}), "status": status.value, "skip_reason": skip_reason}
    if error:
        values["last_error"] = error[:2000]
    if n in db:
        db.expunge(n)  # the row is written by the conditional UPDATE below only
    if not claims.release(db, Notification, claim, values):
        db.rollback()
        return S.SENDING
    if status == S.FAILED:  # final: the clinic is told through its backup routes
        undelivered.queue_for_notification(db, n, now=utcnow())
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
    result = PassResult(planned=plan_all(db, now=now, batch=batch))
    catalogue = get_catalogue()
    while True:
        opened = dispatch_due(db, now=now, settings=settings, limit=batch)
        result.opened += opened.opened
        result.deferred += opened.deferred
        result.expired += opened.expired
        result.skipped += opened.skipped
        result.notes.extend(opened.notes)
        _send_due(db, result, now=now, settings=settings, catalogue=catalogue, batch=batch)
        if opened.seen < batch or opened.unchanged == opened.seen:
            return result


def consume(
    *,
    seconds: float,
    settings: Settings,
    on_progress: Callable[[dict[str, int]], object] | None = None,
    progress_seconds: float = 5.0,
) -> dict[str, int]:
    """A warm sender: a pass, then another every DRAIN_POLL_SECONDS while nothing is due (at once after a pass
    that did something), for ``seconds``. Returns the counts of every pass added up; ``on_progress`` gets them
    every ``progress_seconds`` when they have changed."""
    totals: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    reported, report_at = dict(totals), time.monotonic() + progress_seconds
    while time.monotonic() < deadline:
        with session_scope(settings.resolved_database_url) as db:
            result = run_pass(db, now=utcnow(), settings=settings)
        totals.update(result.summary())
        if on_progress is not None and time.monotonic() >= report_at:
            if dict(totals) != reported:
                reported = dict(totals)
                on_progress(reported)
            report_at = time.monotonic() + progress_seconds
        if not result.work_done:
            time.sleep(settings.drain_poll_seconds)
    return dict(totals)


def _send_due(
    db: Session, result: PassResult, *, now: datetime, settings: Settings, catalogue: Catalogue, batch: int
) -> None:
    """Claim every due message and send it on the pass's pool of senders (``senders.send_all``)."""
    clock = claims.PassClock(now)
    lock = threading.Lock()
    recovered = False
    routes.LIMITS.configure(settings.route_concurrency, settings.route_concurrency_default)
    limit = min(batch, settings.claim_batch)

    def claim_batch() -> list[claims.Claim]:
        return claims.claim(db, Notification, now=now, limit=limit, lease_seconds=settings.claim_lease_seconds)

    def send(session: Session, claim: claims.Claim) -> str:
        nonlocal recovered
        status = deliver(session, claim, now=now, settings=settings, catalogue=catalogue, clock=clock)
        if status == S.SENT:
            with lock:
                first, recovered = not recovered, True
            if first:
                pulled = pull_forward_retries(session, now=now)
                with lock:
                    result.pulled_forward += pulled
        else:
            note = _note(session, claim.id, status)
            if note is not None:
                with lock:
                    result.notes.append(note)
        return status.value

    bind = db.get_bind()
    ids, statuses = senders.send_all(
        db,
        bind if isinstance(bind, Engine) else bind.engine,
        claim_batch,
        send,
        batch=limit,
        concurrency=settings.resolved_sender_concurrency,
        reuse=senders.Reuse(settings.smtp_reuse_messages, settings.smtp_reuse_idle_seconds),
    )
    result.claimed += len(ids)
    result.notification_ids.extend(ids)
    result.sent += statuses[S.SENT.value]
    result.retried += statuses[S.RETRY.value]
    result.failed += statuses[S.FAILED.value]
    result.skipped += statuses[S.SKIPPED.value]


def pull_forward_retries(db: Session, *, now: datetime) -> int:
    """A send just went through, so the mail route works: every message waiting out a backoff is due now
    rather than minutes after the route came back. Retries stay counted; only the wait is cut. Commits."""
    query = (
        update(Notification)
        .where(col(Notification.status) == S.RETRY.value, col(Notification.due_at) > now)
        .values(due_at=now)
    )
    count = db.exec(query).rowcount
    db.commit()
    return int(count or 0)


_ACTIONS = {S.PENDING: "deferred", S.SKIPPED: "skipped", S.RETRY: "retrying", S.FAILED: "failed"}


def _note(db: Session, notification_id: int, status: NotificationStatus) -> Note | None:
    """Why a claimed message was not sent (read back from its row), for the pass's summary."""
    action = _ACTIONS.get(status)
    n = db.get(Notification, notification_id)
    if action is None or n is None:
        return None
    patient = db.get(Patient, n.patient_id)
    what = f"{undelivered.describe(db, n)} (message {n.id})"
    reason = "quiet hours in the patient's time zone" if status == S.PENDING else n.skip_reason or n.last_error or ""
    until = n.due_at if status in (S.PENDING, S.RETRY) else None
    return Note(what, action, reason, until, patient.timezone if patient is not None else "UTC")
