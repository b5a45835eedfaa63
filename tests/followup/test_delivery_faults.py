"""Claims and sends under real faults: a socket that accepts and never answers, an SMTP server that takes the
message and never replies, a 5xx refusal, a claim lost to another sender, a sender stopped mid-send, the
database stopped right after a send — on SQLite and PostgreSQL."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from models import Clinic, Notification
from models.base import utcnow
from needlecare.core import claims
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import _Handler, list_mail, start_capture
from needlecare.followup import outbox, planning
from needlecare.followup.messages import message_id
from needlecare.intake import ingest
from tests.conftest import add_test_clinic, free_port
from tests.factories import event_body
from tests.pg import PgCluster

pytestmark = pytest.mark.faults


def _record(db: Session, n: int) -> int:
    return ingest.record(db, ingest.validate(event_body(n)), actor="test").session_id  # type: ignore[return-value]


def _notes(db: Session) -> list[Notification]:
    db.expire_all()
    return list(db.exec(select(Notification).order_by(Notification.id)).all())


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A TCP server that accepts connections and never sends a byte (no SMTP greeting)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_claims_never_exceed_the_limit(db: Session, clinic: Clinic) -> None:
    for n in range(1, 41):
        _record(db, n)
    planning.plan_pending_sessions(db, now=utcnow(), limit=100)
    got = claims.claim(db, Notification, now=utcnow(), limit=15, lease_seconds=60)
    assert len(got) == 15 and len({c.token for c in got}) == 1
    rest = claims.claim(db, Notification, now=utcnow(), limit=100, lease_seconds=60)
    assert len(rest) == 25 and not {c.id for c in rest} & {c.id for c in got}


def test_a_lost_claim_records_nothing_and_sends_nothing(
    db: Session, clinic: Clinic, settings: Settings, tmp_path: Path
) -> None:
    _record(db, 1)
    now = utcnow()
    planning.plan_pending_sessions(db, now=now, limit=10)
    [first] = claims.claim(db, Notification, now=now, limit=10, lease_seconds=60)
    # The first sender stalls past its lease; a second one takes the row over.
    [second] = claims.claim(db, Notification, now=now + timedelta(seconds=61), limit=10, lease_seconds=60)
    assert second.id == first.id and second.token != first.token
    controller = start_capture(tmp_path / "mail", port=settings.smtp_capture_port)
    try:
        settings = settings.model_copy(update={"mail_capture_dir": tmp_path / "mail"})
        stale = outbox.deliver(db, first, now=now, settings=settings)
        assert stale == "sending" and list_mail(tmp_path / "mail") == []
        assert outbox.deliver(db, second, now=now + timedelta(seconds=61), settings=settings) == "sent"
        assert len(list_mail(tmp_path / "mail")) == 1
    finally:
        controller.stop()
    [n] = _notes(db)
    assert n.status == "sent" and n.claim_token is None and n.attempts == 2


def test_a_hanging_server_times_out_inside_a_renewed_lease(
    db: Session, clinic: Clinic, settings: Settings, hanging_port: int
) -> None:
    settings = settings.model_copy(
        update={
            "patient_email_url": f"mailto://127.0.0.1:{hanging_port}?from=care@clinic.example",
            "delivery_timeout_seconds": 2.0,
            "claim_lease_seconds": 0.9,  # shorter than one send: only renewal keeps the claim
        }
    )
    _record(db, 1)
    now = utcnow()
    planning.plan_pending_sessions(db, now=now, limit=10)
    [c] = claims.claim(db, Notification, now=now, limit=10, lease_seconds=settings.claim_lease_seconds)
    taken: list[list[claims.Claim]] = []

    def rival() -> None:  # another sender polling the same table while the first one waits on the socket
        with Session(db.get_bind()) as other:  # type: ignore[arg-type]
            deadline = time.monotonic() + 1.6
            while time.monotonic() < deadline:
                clock = claims.PassClock(now)
                taken.append(claims.claim(other, Notification, now=clock.now(), limit=10, lease_seconds=0.9))
                time.sleep(0.1)

    thread = threading.Thread(target=rival)
    started = time.monotonic()
    thread.start()
    status = outbox.deliver(db, c, now=now, settings=settings, clock=claims.PassClock(now))
    thread.join()
    elapsed = time.monotonic() - started
    assert status == "retry"
    assert elapsed < 10, "every network operation has a timeout"
    assert [got for got in taken if got] == [], "nobody else claimed the row while it was being sent"
    [n] = _notes(db)
    assert n.status == "retry" and n.attempts == 1 and n.ambiguous_attempts == 0


class _SlowAfterData(_Handler):
    """Keeps each message (as the capture does) but answers DATA only after ``delay`` seconds."""

    def __init__(self, directory: Path, delay: float) -> None:
        super().__init__(directory)
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return answer


class _Refuse(_Handler):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 5.1.1 mailbox unavailable"


def _serve(handler: _Handler) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def test_no_reply_after_the_handover_is_ambiguous_and_retried_with_the_same_message_id(
    db: Session, clinic: Clinic, settings: Settings, tmp_path: Path
) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    controller, port = _serve(_SlowAfterData(mail, delay=4))
    settings = settings.model_copy(
        update={
            "patient_email_url": f"mailto://127.0.0.1:{port}?from=care@clinic.example",
            "delivery_timeout_seconds": 1.0,
            "delivery_backoff_seconds": 1.0,
        }
    )
    _record(db, 1)
    now = utcnow()
    try:
        first = outbox.run_pass(db, now=now, settings=settings)
    finally:
        controller.stop()
    assert first.retried == 1
    [n] = _notes(db)
    assert n.status == "retry" and n.ambiguous_attempts == 1
    assert "no reply after the message was handed over" in (n.last_error or "")
    controller = start_capture(mail, port=port)
    try:
        second = outbox.run_pass(db, now=now + timedelta(seconds=5), settings=settings)
    finally:
        controller.stop()
    assert second.sent == 1
    copies = list_mail(mail)
    assert len(copies) == 2, "the slow server kept the first copy: the ambiguous case, counted and retried"
    assert {c.headers["Message-ID"] for c in copies} == {message_id(n, settings)}


def test_a_5xx_refusal_is_final_at_once(db: Session, clinic: Clinic, settings: Settings, tmp_path: Path) -> None:
    controller, port = _serve(_Refuse(tmp_path))
    settings = settings.model_copy(update={"patient_email_url": f"mailto://127.0.0.1:{port}?from=a@clinic.example"})
    _record(db, 1)
    try:
        result = outbox.run_pass(db, now=utcnow(), settings=settings)
    finally:
        controller.stop()
    assert result.failed == 1 and result.retried == 0
    [n] = _notes(db)
    assert n.status == "failed" and (n.last_error or "").startswith("SMTP reply 550")


def test_a_claim_taken_over_mid_send_counts_an_ambiguous_attempt(db: Session, clinic: Clinic) -> None:
    for n in (1, 2):
        _record(db, n)
    now = utcnow()
    planning.plan_pending_sessions(db, now=now, limit=10)
    held, idle = claims.claim(db, Notification, now=now, limit=10, lease_seconds=60)
    assert claims.begin_send(db, Notification, held, now=now)  # this one was leaving when its sender stopped
    later = now + timedelta(seconds=61)
    again = claims.claim(db, Notification, now=later, limit=10, lease_seconds=60)
    assert sorted(c.id for c in again) == [held.id, idle.id]
    by_id = {n.id: n for n in _notes(db)}
    assert by_id[held.id].ambiguous_attempts == 1 and by_id[held.id].last_error == claims.STOPPED_MID_SEND
    assert by_id[idle.id].ambiguous_attempts == 0 and by_id[idle.id].last_error is None
    assert all(n.send_started_at is None and n.attempts == 2 for n in by_id.values())


class _StopsTheDatabaseAfterData(_Handler):
    """Keeps each message, then stops PostgreSQL before answering, and starts it again ``outage`` s later."""

    def __init__(self, directory: Path, cluster: PgCluster, outage: float) -> None:
        super().__init__(directory)
        self.cluster, self.outage = cluster, outage
        self.restarted = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        self.cluster.pause()

        def resume() -> None:
            time.sleep(self.outage)
            self.cluster.resume()
            self.restarted.set()

        threading.Thread(target=resume, daemon=True).start()
        return answer


def test_an_outage_right_after_the_send_does_not_send_again(own_cluster: PgCluster, tmp_path: Path) -> None:
    url = own_cluster.url(own_cluster.create_database())
    database.upgrade(url)
    mail = tmp_path / "mail"
    mail.mkdir()
    handler = _StopsTheDatabaseAfterData(mail, own_cluster, outage=4.0)
    controller, port = _serve(handler)
    settings = Settings(
        env="test",
        data_dir=tmp_path,
        database_url=url,
        patient_email_url=f"mailto://127.0.0.1:{port}?from=care@clinic.example",
        public_base_url="http://needlecare.test",
        claim_lease_seconds=3.0,  # shorter than the outage: only the retried outcome write keeps the row
    )
    try:
        with Session(database.get_engine(url), expire_on_commit=False) as db:
            add_test_clinic(db)
            _record(db, 1)
            now = utcnow()
            planning.plan_pending_sessions(db, now=now, limit=10)
            [c] = claims.claim(db, Notification, now=now, limit=10, lease_seconds=settings.claim_lease_seconds)
            started = time.monotonic()
            status = outbox.deliver(db, c, now=now, settings=settings)
            waited = time.monotonic() - started
            assert handler.restarted.is_set() and waited >= 4.0, "the outcome was written after the outage"
            assert status == "sent"
            assert claims.claim(db, Notification, now=utcnow() + timedelta(seconds=60), limit=10, lease_seconds=3) == []
            [n] = _notes(db)
            assert (n.status, n.claim_token, n.send_started_at, n.ambiguous_attempts) == ("sent", None, None, 0)
    finally:
        controller.stop()
        database.get_engine(url).dispose()
    assert len(list_mail(mail)) == 1


CLAIMER = """
import sys, time
from datetime import datetime
from sqlmodel import Session
from models import Notification
from needlecare.core import claims
from needlecare.core import db as database

with Session(database.get_engine(sys.argv[1])) as db:
    now = datetime.fromisoformat(sys.argv[2])
    got = claims.claim(db, Notification, now=now, limit=int(sys.argv[3]), lease_seconds=600)
print(len(got), flush=True)
time.sleep(600)
"""


def test_the_claims_of_a_killed_process_on_this_machine_are_taken_at_once(
    db: Session, clinic: Clinic, db_url: str
) -> None:
    for n in (1, 2, 3):
        _record(db, n)
    now = utcnow()
    planning.plan_pending_sessions(db, now=now, limit=10)
    dead = subprocess.Popen([sys.executable, "-c", CLAIMER, db_url, now.isoformat(), "2"], stdout=subprocess.PIPE)
    alive = subprocess.Popen([sys.executable, "-c", CLAIMER, db_url, now.isoformat(), "1"], stdout=subprocess.PIPE)
    try:
        assert dead.stdout is not None and dead.stdout.readline().strip() == b"2"
        assert alive.stdout is not None and alive.stdout.readline().strip() == b"1"
        owners = {n.id: int(n.claim_token[8:16], 16) for n in _notes(db) if n.claim_token}
        dead_ids = {i for i, pid in owners.items() if pid == dead.pid}
        assert len(dead_ids) == 2 and len(owners) == 3
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(30)
        soon = now + timedelta(seconds=1)  # both leases (600 s) still running
        taken = claims.claim(db, Notification, now=soon, limit=10, lease_seconds=600)
        assert {c.id for c in taken} == dead_ids, "the killed process's rows, not the live one's"
    finally:
        for p in (dead, alive):
            if p.poll() is None:
                p.kill()
            p.wait(30)
