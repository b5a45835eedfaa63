"""The outbox against a real SMTP sink (aiosmtpd) and a real database (SQLite and PostgreSQL)."""

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from models import Clinic, Notification, TreatmentSession
from models.base import utcnow
from needlecare.core import clock
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import list_mail, start_capture
from needlecare.followup import outbox, planning
from needlecare.intake import ingest
from tests.factories import PATIENT_EMAIL, event_body


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    directory = settings.resolved_mail_capture_dir
    controller: Controller = start_capture(directory, port=settings.smtp_capture_port)
    yield directory
    controller.stop()


def _record(db: Session, n: int, **overrides: object) -> int:
    return ingest.record(db, ingest.validate(event_body(n, **overrides)), actor="test").session_id  # type: ignore[arg-type]


def _notifications(db: Session) -> list[Notification]:
    db.expire_all()
    return list(db.exec(select(Notification).order_by(Notification.id)).all())


def test_a_pass_plans_and_sends_the_aftercare_notice(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    sid = _record(db, 1)
    result = outbox.run_pass(db, now=utcnow(), settings=settings)
    assert result.summary() == {
        "planned": 1,
        "opened": 0,
        "deferred": 0,
        "expired": 0,
        "claimed": 1,
        "sent": 1,
        "retried": 0,
        "failed": 0,
        "skipped": 0,
        "pulled_forward": 0,
    }
    [n] = _notifications(db)
    assert (n.status, n.idempotency_key, n.attempts) == ("sent", f"aftercare:session:{sid}", 1)
    assert n.sent_at is not None
    [mail] = list_mail(sink)
    assert mail.to == [PATIENT_EMAIL]
    assert "Sam" in mail.text and "Okafor" not in mail.text + mail.html + mail.subject
    assert "tel:+15550100200" in mail.text, "our own text part, with links written out"
    assert "<html" in mail.html.lower()
    assert mail.headers["X-Needlecare-Notification"] == str(n.id)
    assert mail.attachments == ["follow-up-checks.ics"], "the check-in dates as a calendar file"
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.headers["List-Unsubscribe"].startswith("<http://needlecare.test/u/")
    session = db.get(TreatmentSession, sid)
    assert session is not None and session.planned_at is not None
    # A second pass finds nothing to do: nothing is sent twice.
    again = outbox.run_pass(db, now=utcnow(), settings=settings)
    assert again.work_done == 0 and len(list_mail(sink)) == 1


def test_two_dispatchers_never_send_the_same_notice(
    db_url: str, db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    for n in range(1, 31):
        _record(db, n)
    errors: list[BaseException] = []

    def dispatcher() -> None:
        try:
            for _ in range(5):
                with Session(database.get_engine(db_url), expire_on_commit=False) as own:
                    outbox.run_pass(own, now=utcnow(), settings=settings, batch=4)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    notes = _notifications(db)
    assert len(notes) == 30 and {n.status for n in notes} == {"sent"}
    assert all(n.attempts == 1 for n in notes)
    mails = list_mail(sink, limit=100)
    ids = [m.headers["X-Needlecare-Notification"] for m in mails]
    assert len(ids) == 30 and len(set(ids)) == 30


def test_smtp_down_is_retried_with_backoff_then_sent(db: Session, clinic: Clinic, settings: Settings) -> None:
    _record(db, 1)
    now = utcnow()
    result = outbox.run_pass(db, now=now, settings=settings)  # nothing listens on the SMTP port yet
    assert result.retried == 1
    [n] = _notifications(db)
    assert n.status == "retry" and n.attempts == 1 and n.last_error
    assert "@" not in (n.last_error or ""), "no address in the stored error"
    base = settings.delivery_backoff_seconds  # jittered: between half and all of the first delay (plus the send)
    assert now + timedelta(seconds=base / 2) <= n.due_at <= now + timedelta(seconds=base + 10)
    assert outbox.run_pass(db, now=now + timedelta(seconds=1), settings=settings).claimed == 0  # not due yet
    controller = start_capture(settings.resolved_mail_capture_dir, port=settings.smtp_capture_port)
    try:
        later = outbox.run_pass(db, now=now + timedelta(seconds=base + 11), settings=settings)
    finally:
        controller.stop()
    assert later.sent == 1
    [n] = _notifications(db)
    assert n.status == "sent" and n.attempts == 2


def test_retries_while_useful_then_gives_up_and_records_why(db: Session, clinic: Clinic, settings: Settings) -> None:
    """No attempt limit: an aftercare notice is retried until it would be older than AFTERCARE_MAX_AGE_HOURS."""
    settings = settings.model_copy(
        update={"aftercare_max_age_hours": 1, "delivery_backoff_seconds": 1800, "delivery_backoff_max_seconds": 3600}
    )
    _record(db, 1)  # the session ended 10 minutes ago: the notice is useful for 50 more minutes
    now = utcnow()
    outbox.run_pass(db, now=now, settings=settings)  # next try 15-30 min later: still useful
    [n] = _notifications(db)
    assert n.status == "retry" and n.attempts == 1
    outbox.run_pass(db, now=now + timedelta(minutes=31), settings=settings)  # the next would be 15-60 min later
    [n] = _notifications(db)
    assert n.status == "failed" and n.attempts == 2
    assert (n.last_error or "").startswith("gave up after 2 attempts, no longer useful")
    later = outbox.run_pass(db, now=now + timedelta(days=1), settings=settings)  # a check-in may fall due then
    assert n.id not in later.notification_ids
    assert db.get(Notification, n.id).status == "failed"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"patient__consent": {"email": False}}, "no consent to email"),
        ({"patient__email": None}, "no email address on file"),
    ],
)
def test_notices_that_must_not_go_are_skipped_with_a_reason(
    db: Session, clinic: Clinic, settings: Settings, sink: Path, overrides: dict[str, object], reason: str
) -> None:
    _record(db, 1, **overrides)
    result = outbox.run_pass(db, now=utcnow(), settings=settings)
    assert result.skipped == 1
    [n] = _notifications(db)
    assert (n.status, n.skip_reason) == ("skipped", reason)
    assert list_mail(sink) == []


def test_an_old_session_is_recorded_but_not_sent(db: Session, clinic: Clinic, settings: Settings, sink: Path) -> None:
    _record(db, 1, completed_at=(utcnow() - timedelta(days=3)).isoformat())
    outbox.run_pass(db, now=utcnow(), settings=settings)
    [n] = [n for n in _notifications(db) if n.kind == "aftercare"]  # the session's check-ins may be due too
    assert n.status == "skipped" and "more than 48 h ago" in (n.skip_reason or "")


def test_a_claim_abandoned_by_a_dead_worker_is_taken_again_after_the_lease(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    _record(db, 1)
    now = utcnow()
    planning.plan_pending_sessions(db, now=now)
    claimed = outbox.claim_due(db, now=now, limit=10, lease_seconds=600)
    assert len(claimed) == 1
    # The worker "dies" here. Within the lease nobody else may take it:
    assert outbox.claim_due(db, now=now + timedelta(seconds=599), limit=10, lease_seconds=600) == []
    result = outbox.run_pass(db, now=now + timedelta(seconds=601), settings=settings)
    assert result.sent == 1
    assert len(list_mail(sink)) == 1


def test_capture_files_are_complete_when_listed(settings: Settings, sink: Path, db: Session, clinic: Clinic) -> None:
    for n in range(1, 6):
        _record(db, n)
    outbox.run_pass(db, now=utcnow(), settings=settings)
    time.sleep(0.05)
    assert not list(sink.glob(".*.tmp"))
    assert len(list_mail(sink)) == 5


def test_one_pass_works_through_every_batch(db: Session, clinic: Clinic, settings: Settings, sink: Path) -> None:
    for n in range(1, 11):
        _record(db, n, patient__timezone="UTC")
    now = utcnow()
    first = outbox.run_pass(db, now=now, settings=settings, batch=3)
    assert (first.planned, first.sent) == (10, 10)
    completed = db.exec(select(TreatmentSession.completed_at)).first()
    assert completed is not None
    # a day later, out of the default quiet hours (the patients are on UTC); still inside the 18-48 h window
    next_day = clock.next_allowed(completed + timedelta(hours=24, minutes=1), "UTC", 21, 8)
    second = outbox.run_pass(db, now=next_day, settings=settings, batch=3)
    assert (second.opened, second.sent) == (10, 10), second.summary()


@pytest.mark.parametrize(("due", "wanted"), [(0, 0), (59, 0), (60, 1), (79, 1), (80, 2), (10_000, 2)])
def test_helper_runs_are_asked_for_beyond_two_batches_up_to_the_setting(due: int, wanted: int) -> None:
    from flows.aftercare import helpers_wanted

    assert helpers_wanted(due, batch=20, most=2) == wanted


def test_a_draining_run_outwaits_another_senders_claims_then_stops(
    db: Session, clinic: Clinic, settings: Settings
) -> None:
    from needlecare.core import claims

    _record(db, 1)
    now = utcnow()
    planning.plan_pending_sessions(db, now=now, limit=10)
    lease = settings.claim_lease_seconds
    ask = {"settings": settings, "linger_seconds": 5.0}
    assert outbox.keep_polling(db, now=now, idle_seconds=1.0, **ask), "within its linger"
    assert not outbox.keep_polling(db, now=now, idle_seconds=6.0, **ask), "nothing held: it stops after the linger"
    [held] = claims.claim(db, Notification, now=now, limit=10, lease_seconds=lease)  # another sender, mid-send
    assert outbox.keep_polling(db, now=now, idle_seconds=6.0, **ask), "waits on a live claim past its linger"
    assert not outbox.keep_polling(db, now=now, idle_seconds=5.0 + 2 * lease, **ask), "but not beyond two leases"
    stale = now + timedelta(seconds=lease + 1)  # the other sender died: its lease ran out
    assert not outbox.keep_polling(db, now=stale, idle_seconds=6.0, **ask)
    taken = outbox.claim_due(db, now=stale, limit=10, lease_seconds=lease)
    assert taken == [held.id], "and its message is claimable the moment the lease runs out"
