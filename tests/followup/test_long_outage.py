"""A mail outage longer than the old five-attempt budget (which gave up after ~7.5 min): 300 aftercare notices,
the SMTP port refusing connections for 20 minutes, then a working server — every notice delivered, once.

The outage is real (nothing listens on the port, so each send is refused by the kernel); the retry schedule
runs on an advanced clock: passes at one-minute steps of the pass's ``now``, so 20 minutes of backoff take
seconds of wall time. Prints one line: fault, sessions, expected, delivered, duplicates, lost, recovery.
"""

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from models import Clinic, Notification
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import list_mail, start_capture
from needlecare.followup import outbox
from needlecare.intake import ingest
from tests.factories import event_body

SESSIONS = 300
OUTAGE = timedelta(minutes=20)

pytestmark = pytest.mark.faults


def test_a_twenty_minute_refusal_loses_nothing_and_sends_nothing_twice(
    db: Session, clinic: Clinic, settings: Settings, tmp_path: Path
) -> None:
    for n in range(1, SESSIONS + 1):
        ingest.record(db, ingest.validate(event_body(n)), actor="test")
    start = utcnow()
    now = start
    while now < start + OUTAGE:  # the SMTP port refuses every connection
        outbox.run_pass(db, now=now, settings=settings)
        now += timedelta(minutes=1)
    statuses = dict(db.exec(select(Notification.status, func.count()).group_by(Notification.status)).all())
    assert statuses == {"retry": SESSIONS}, f"still being retried after {OUTAGE}, none given up: {statuses}"

    mail_dir = tmp_path / "mail"
    controller = start_capture(mail_dir, port=settings.smtp_capture_port)
    try:
        settings = settings.model_copy(update={"mail_capture_dir": mail_dir})
        recovered_at = now
        while db.exec(select(func.count()).select_from(Notification).where(Notification.status != "sent")).one():
            assert now - recovered_at < timedelta(hours=1), "not delivered within an hour of the server's return"
            outbox.run_pass(db, now=now, settings=settings)
            now += timedelta(minutes=1)
    finally:
        controller.stop()
    copies = Counter(mail.headers["X-Needlecare-Notification"] for mail in list_mail(mail_dir, limit=SESSIONS * 2))
    duplicates = sum(count - 1 for count in copies.values())
    lost = SESSIONS - len(copies)
    recovery = (now - recovered_at).total_seconds()
    print(
        f"\nfault=smtp-refused-{OUTAGE.seconds // 60}min sessions={SESSIONS} expected={SESSIONS} "
        f"delivered={len(copies)} duplicates={duplicates} lost={lost} recovery_s={recovery:.0f} (advanced clock)"
    )
    assert duplicates == 0 and lost == 0
    assert recovery <= settings.delivery_backoff_max_seconds + 60, "the capped backoff bounds the recovery"
