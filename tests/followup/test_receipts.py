"""A sender process killed after the SMTP server accepted a message, before its "sent" was committed.

The worst moment for a kill is made on purpose: the capture keeps the message and, before answering DATA,
takes the database lock the sender's outcome write needs (SQLite's write lock; the row's lock on
PostgreSQL). The sender gets its 250, closes the connection, and waits for the lock; the test sees the
QUIT, kills the process with SIGKILL and lets the lock go. The next pass must find the delivery receipt and
record the message sent, with no second copy.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from models import Clinic, Notification
from models.base import utcnow
from needlecare.core import claims
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import _Handler, list_mail
from needlecare.followup import outbox, planning
from needlecare.intake import ingest
from tests.factories import event_body
from tests.followup.rowlock import OutcomeLock
from tests.followup.test_delivery_faults import _serve

pytestmark = pytest.mark.faults

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


class _LocksTheOutcomeAfterData(_Handler):
    """Keeps each message, then takes the lock the sender's outcome write needs before answering 250."""

    def __init__(self, directory: Path, database_url: str, notification_id: int) -> None:
        super().__init__(directory)
        self.lock = OutcomeLock(database_url, notification_id)
        self.quit_seen = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        self.lock.take()  # only on the first message: a second copy is simply kept and counted
        return answer

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quit_seen.set()
        return "221 Bye"

    def release(self) -> None:
        self.lock.release()


def test_a_sender_killed_before_its_commit_is_not_followed_by_a_second_copy(
    db: Session, clinic: Clinic, settings: Settings, tmp_path: Path
) -> None:
    ingest.record(db, ingest.validate(event_body(1)), actor="test")
    now = utcnow()
    planning.plan_pending_sessions(db, now=now, limit=10)
    [notice] = db.exec(select(Notification)).all()
    mail = tmp_path / "mail"
    mail.mkdir()
    handler = _LocksTheOutcomeAfterData(mail, settings.resolved_database_url, int(notice.id or 0))
    controller, port = _serve(handler)
    settings = settings.model_copy(
        update={"patient_email_url": f"mailto://127.0.0.1:{port}?from=care@clinic.example", "claim_lease_seconds": 5.0}
    )
    given = json.dumps(settings.model_dump(mode="json") | {"secret_key": settings.secret_key.get_secret_value()})
    sender = subprocess.Popen([sys.executable, "-c", SENDER, given, now.isoformat()])
    try:
        while not handler.quit_seen.wait(0.2):
            assert sender.poll() is None, "the sender stopped before closing its SMTP connection"
        os.kill(sender.pid, signal.SIGKILL)
        assert sender.wait(30) == -signal.SIGKILL
    finally:
        if sender.poll() is None:
            sender.kill()
        handler.release()
    try:
        assert len(list_mail(mail)) == 1
        db.expire_all()
        left = db.get(Notification, notice.id)
        assert left is not None and left.status == "sending" and left.send_started_at is not None
        later = now + timedelta(seconds=settings.claim_lease_seconds + 1)
        result = outbox.run_pass(db, now=later, settings=settings)
        assert (result.claimed, result.sent) == (1, 1)
    finally:
        controller.stop()
    assert len(list_mail(mail)) == 1, "the message was sent a second time"
    db.expire_all()
    done = db.get(Notification, notice.id)
    assert done is not None
    assert (done.status, done.attempts, done.ambiguous_attempts) == ("sent", 1, 0)
    assert done.last_error == claims.FROM_RECEIPT and done.sent_at is not None
    assert list(settings.resolved_receipts_dir.glob("*")) == [], "the receipt is removed once recorded"
