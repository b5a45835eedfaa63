"""Text messages under faults: a refused connection, a refusing or failing provider, no answer, and a sender
killed after the provider accepted a text and before its outcome was committed (real HTTP gateway on loopback,
real database, a real killed process)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from models import Clinic, Contact, Notification
from needlecare.core import claims
from needlecare.core.settings import Settings
from needlecare.followup import dispatch, outbox, planning
from needlecare.followup.delivery import AmbiguousDeliveryError, PermanentDeliveryError, TransientDeliveryError
from needlecare.followup.sms import send_sms, sms_url
from needlecare.followup.undelivered import list_undelivered
from tests.conftest import free_port
from tests.factories import PATIENT_PHONE
from tests.followup.rowlock import OutcomeLock
from tests.followup.test_sms_channel import SMS_ONLY, Gateway, record, start_gateway

SENDER = """
import sys
from datetime import datetime
from sqlmodel import Session
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.followup import outbox

settings = Settings.model_validate_json(sys.argv[1])
with Session(database.get_engine(settings.resolved_database_url)) as db:
    outbox.run_pass(db, now=datetime.fromisoformat(sys.argv[2]), settings=settings)
"""


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = start_gateway()
    yield gw
    gw.server.shutdown()
    gw.server.server_close()


def _settings(settings: Settings, url: str, **more: object) -> Settings:
    values = {"patient_sms_url": url, "quiet_hours_start": 0, "quiet_hours_end": 0, "delivery_timeout_seconds": 2.0}
    return settings.model_copy(update=values | more)


def _opened(db: Session, settings: Settings, **patient: object) -> tuple[Notification, datetime]:
    """An SMS-only patient's 1-day check-in, opened (its first text due), the aftercare notice done."""
    due = record(db, 1, **(patient or SMS_ONLY))
    planning.plan_pending_sessions(db, now=due, limit=10)
    for n in db.exec(select(Notification).where(Notification.kind == "aftercare")).all():
        n.status = "skipped"  # not allowed by email anyway; keeps the sender's first write on the text
        db.add(n)
    db.commit()
    dispatch.dispatch_due(db, now=due, settings=settings)
    db.expire_all()
    first = db.exec(select(Notification).join(Contact).where(Notification.sequence == 0)).one()
    return first, due


def test_the_recipient_goes_in_at_the_placeholder_or_as_the_last_path_element() -> None:
    assert sms_url("json://gw.example/sms?:to={to}", "+447700900123") == "json://gw.example/sms?:to=%2B447700900123"
    assert sms_url("twilio://SID:TOKEN@+15550100", "+447700900123") == "twilio://SID:TOKEN@+15550100/+447700900123"
    assert sms_url("vonage://KEY:SECRET@15550100/?x=1", "+4477") == "vonage://KEY:SECRET@15550100/+4477?x=1"


def test_send_sms_classifies_what_the_provider_answers(gateway: Gateway) -> None:
    accepted: list[bool] = []
    send_sms(gateway.url, PATIENT_PHONE, "hello", timeout_seconds=2, on_accepted=lambda: accepted.append(True))
    assert accepted == [True] and gateway.received[-1]["to"] == PATIENT_PHONE
    gateway.status = 400
    with pytest.raises(PermanentDeliveryError, match="HTTP 400") as refused:
        send_sms(gateway.url, PATIENT_PHONE, "hello", timeout_seconds=2, on_accepted=lambda: accepted.append(True))
    assert PATIENT_PHONE not in str(refused.value) and PATIENT_PHONE[1:] not in str(refused.value)
    for transient in (503, 429):
        gateway.status = transient
        with pytest.raises(TransientDeliveryError, match=f"HTTP {transient}") as later:
            send_sms(gateway.url, PATIENT_PHONE, "hello", timeout_seconds=2)
        assert not isinstance(later.value, AmbiguousDeliveryError)
    gateway.status, gateway.hold = 200, 3.0
    with pytest.raises(AmbiguousDeliveryError):
        send_sms(gateway.url, PATIENT_PHONE, "hello", timeout_seconds=1)
    with pytest.raises(TransientDeliveryError, match="unreachable") as down:
        send_sms(f"json://127.0.0.1:{free_port()}/sms?:to={{to}}", PATIENT_PHONE, "hello", timeout_seconds=2)
    assert not isinstance(down.value, AmbiguousDeliveryError)
    with pytest.raises(PermanentDeliveryError, match="no usable phone number"):
        send_sms(gateway.url, "07700 900123", "hello")
    assert accepted == [True], "only a 2xx counts as accepted"


def test_a_refused_connection_is_retried_and_the_text_goes_once_the_route_is_back(
    db: Session, clinic: Clinic, settings: Settings, gateway: Gateway
) -> None:
    down = _settings(settings, f"json://127.0.0.1:{free_port()}/sms?:to={{to}}")
    first, due = _opened(db, down)
    outbox.run_pass(db, now=due, settings=down)
    db.expire_all()
    row = db.get(Notification, first.id)
    assert row is not None and (row.status, row.attempts, row.channel) == ("retry", 1, "sms")
    assert "unreachable" in (row.last_error or "") and row.due_at > due
    up = _settings(settings, gateway.url)
    outbox.run_pass(db, now=row.due_at, settings=up)
    db.expire_all()
    row = db.get(Notification, first.id)
    assert row is not None and (row.status, row.attempts) == ("sent", 2)
    assert len(gateway.received) == 1


def test_a_number_the_provider_refuses_fails_for_good_and_staff_see_it(
    db: Session, clinic: Clinic, settings: Settings, gateway: Gateway
) -> None:
    gateway.status = 400
    sms = _settings(settings, gateway.url)
    first, due = _opened(db, sms, patient__consent={"email": False, "sms": True})  # an email on file, no consent
    result = outbox.run_pass(db, now=due, settings=sms)
    assert result.failed == 1
    db.expire_all()
    row = db.get(Notification, first.id)
    assert row is not None and (row.status, row.channel) == ("failed", "sms")
    assert "HTTP 400" in (row.last_error or "") and PATIENT_PHONE[1:] not in (row.last_error or "")
    [shown] = [r for r in list_undelivered(db, clinic.id) if r.row_id == first.id]
    assert shown.what == "check-in check_24h" and "HTTP 400" in shown.reason and shown.contact == PATIENT_PHONE
    outbox.run_pass(db, now=due + timedelta(hours=1), settings=sms)
    assert len(gateway.received) == 1, "a permanent failure is not tried again"


def test_a_provider_that_never_answers_is_retried_as_ambiguous(
    db: Session, clinic: Clinic, settings: Settings, gateway: Gateway
) -> None:
    gateway.hold = 3.0
    sms = _settings(settings, gateway.url, delivery_timeout_seconds=1.0)
    first, due = _opened(db, sms)
    outbox.run_pass(db, now=due, settings=sms)
    db.expire_all()
    row = db.get(Notification, first.id)
    assert row is not None and (row.status, row.ambiguous_attempts) == ("retry", 1)


class _LockAfterAccepting(OutcomeLock):
    """On the text's POST: take the lock the sender's outcome write needs, then let the 200 go.

    A second copy is simply recorded and counted."""

    def __call__(self, post: dict[str, Any]) -> None:
        self.take()


@pytest.mark.faults
def test_a_sender_killed_after_the_provider_accepted_a_text_sends_no_second_copy(
    db: Session, clinic: Clinic, settings: Settings, gateway: Gateway
) -> None:
    sms = _settings(settings, gateway.url, claim_lease_seconds=5.0)
    first, due = _opened(db, sms)
    locker = _LockAfterAccepting(sms.resolved_database_url, int(first.id or 0))
    gateway.on_post = locker
    given = json.dumps(sms.model_dump(mode="json") | {"secret_key": sms.secret_key.get_secret_value()})
    sender = subprocess.Popen([sys.executable, "-c", SENDER, given, due.isoformat()])
    receipts = sms.resolved_receipts_dir
    try:
        deadline = time.monotonic() + 60
        while not (receipts.is_dir() and any(receipts.glob("notification-*"))):
            assert sender.poll() is None, "the sender stopped before the gateway accepted the text"
            assert time.monotonic() < deadline, "no receipt was written after the 200"
            time.sleep(0.05)
        os.kill(sender.pid, signal.SIGKILL)
        assert sender.wait(30) == -signal.SIGKILL
    finally:
        if sender.poll() is None:
            sender.kill()
        locker.release()
    assert len(gateway.received) == 1
    db.expire_all()
    left = db.get(Notification, first.id)
    assert left is not None and left.status == "sending"
    result = outbox.run_pass(db, now=due + timedelta(seconds=sms.claim_lease_seconds + 1), settings=sms)
    assert result.sent == 1
    assert len(gateway.received) == 1, "the text was sent a second time"
    db.expire_all()
    done = db.get(Notification, first.id)
    assert done is not None and (done.status, done.last_error) == ("sent", claims.FROM_RECEIPT)
    assert list(receipts.glob("*")) == [], "the receipt is removed once recorded"
