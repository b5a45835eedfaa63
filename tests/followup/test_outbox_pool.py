"""A pass's pool of senders, per-route limits and SMTP connection reuse, against real SMTP servers (aiosmtpd)
and a real database (SQLite and PostgreSQL)."""

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, col, select

from models import Clinic, Notification
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.rendering import RenderedEmail
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import _Handler, list_mail, start_capture
from needlecare.followup import outbox, smtpconn
from needlecare.followup.delivery import PermanentDeliveryError, send_email
from needlecare.followup.routes import RouteLimits, route_of
from needlecare.intake import ingest
from tests.conftest import free_port
from tests.factories import event_body

EMAIL = RenderedEmail(subject="Hello", html="<p>Hello</p>", text="Hello")


class _Counting(_Handler):
    """Keeps each message; counts the connections they came over and the most DATA replies pending at once."""

    def __init__(self, directory: Path, delay: float = 0.0) -> None:
        super().__init__(directory)
        self.delay = delay
        self.sessions: set[int] = set()
        self.noops = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sessions.add(id(session))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.in_flight -= 1


@pytest.fixture
def counting(tmp_path: Path) -> Iterator[tuple[_Counting, int]]:
    mail = tmp_path / "counted"
    mail.mkdir()
    handler = _Counting(mail)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _record(db: Session, n: int) -> None:
    ingest.record(db, ingest.validate(event_body(n)), actor="test")


def _pointed_at(settings: Settings, port: int, **update: object) -> Settings:
    """``settings`` sending patient mail to the counting SMTP server on ``port``, with ``update`` applied."""
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=care@clinic.example"
    return settings.model_copy(update={"patient_email_url": url, **update})


def _notes(db: Session) -> list[Notification]:
    db.expire_all()
    return list(db.exec(select(Notification).order_by(col(Notification.id))).all())


def test_a_pass_sends_a_burst_on_its_pool_each_message_once_over_few_connections(
    db: Session, clinic: Clinic, settings: Settings, counting: tuple[_Counting, int]
) -> None:
    handler, port = counting
    handler.delay = 0.05  # long enough for senders' conversations to overlap at the server
    settings = _pointed_at(settings, port, sender_concurrency=4, claim_batch=5)
    for n in range(1, 41):
        _record(db, n)
    result = outbox.run_pass(db, now=utcnow(), settings=settings)
    assert (result.claimed, result.sent) == (40, 40)
    notes = _notes(db)
    assert {n.status for n in notes} == {"sent"} and all(n.attempts == 1 for n in notes)
    assert all(n.claim_token is None and n.send_started_at is None for n in notes)
    mails = list_mail(handler.directory, limit=100)
    assert sorted(int(m.headers["X-Needlecare-Notification"]) for m in mails) == sorted(n.id or 0 for n in notes)
    assert 1 < handler.most_in_flight <= 4, "sent concurrently, never by more senders than the pool has"
    assert len(handler.sessions) <= 4, "each sender kept its connection for its next message"
    assert handler.noops >= 40 - 4, "every reuse was preceded by a NOOP"
    assert list(settings.resolved_receipts_dir.glob("*")) == []


def test_two_pooled_passes_at_once_never_send_the_same_notice(
    db_url: str, db: Session, clinic: Clinic, settings: Settings, counting: tuple[_Counting, int]
) -> None:
    handler, port = counting
    handler.delay = 0.02
    settings = _pointed_at(settings, port, sender_concurrency=3, claim_batch=4)
    for n in range(1, 31):
        _record(db, n)
    errors: list[BaseException] = []

    def dispatcher() -> None:
        try:
            with Session(database.get_engine(db_url), expire_on_commit=False) as own:
                outbox.run_pass(own, now=utcnow(), settings=settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    notes = _notes(db)
    assert {n.status for n in notes} == {"sent"} and all(n.attempts == 1 for n in notes)
    ids = [m.headers["X-Needlecare-Notification"] for m in list_mail(handler.directory, limit=100)]
    assert len(ids) == 30 and len(set(ids)) == 30


def test_a_route_never_gets_more_messages_at_once_than_its_limit(
    db: Session, clinic: Clinic, settings: Settings, counting: tuple[_Counting, int]
) -> None:
    handler, port = counting
    handler.delay = 0.1
    settings = _pointed_at(settings, port, sender_concurrency=8, route_concurrency={"127.0.0.1": 2})
    for n in range(1, 17):
        _record(db, n)
    result = outbox.run_pass(db, now=utcnow(), settings=settings)
    assert result.sent == 16
    assert handler.most_in_flight == 2


def test_without_reuse_every_message_opens_its_own_connection(
    db: Session, clinic: Clinic, settings: Settings, counting: tuple[_Counting, int]
) -> None:
    handler, port = counting
    settings = _pointed_at(settings, port, sender_concurrency=1, smtp_reuse_messages=0)
    for n in range(1, 7):
        _record(db, n)
    assert outbox.run_pass(db, now=utcnow(), settings=settings).sent == 6
    assert len(handler.sessions) == 6 and handler.noops == 0


def test_a_kept_connection_the_server_dropped_is_replaced_before_the_next_message(tmp_path: Path) -> None:
    port = free_port()
    first, second = tmp_path / "first", tmp_path / "second"
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=care@clinic.example"
    with smtpconn.reusing_connections(max_messages=10, idle_seconds=60) as pool:
        assert pool is not None
        controller = start_capture(first, port=port)
        send_email(url, "pat@example.org", EMAIL, timeout_seconds=2)
        controller.stop()  # the server goes away with the kept connection
        controller = start_capture(second, port=port)
        try:
            send_email(url, "pat@example.org", EMAIL, timeout_seconds=2)
        finally:
            controller.stop()
        assert (pool.opened, pool.reuses) == (2, 0)
    assert len(list_mail(first)) == 1 and len(list_mail(second)) == 1


def test_connections_are_not_kept_past_their_message_count_or_idle_time(
    counting: tuple[_Counting, int],
) -> None:
    handler, port = counting
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=care@clinic.example"
    with smtpconn.reusing_connections(max_messages=2, idle_seconds=60) as pool:
        for _ in range(5):
            send_email(url, "pat@example.org", EMAIL, timeout_seconds=2)
        assert pool is not None and (pool.opened, pool.reuses) == (3, 2)
    with smtpconn.reusing_connections(max_messages=10, idle_seconds=0) as pool:
        for _ in range(3):
            send_email(url, "pat@example.org", EMAIL, timeout_seconds=2)
        assert pool is not None and (pool.opened, pool.reuses) == (3, 0)
    assert len(handler.sessions) == 6 and len(list_mail(handler.directory)) == 8


def test_a_refused_message_closes_its_connection(tmp_path: Path) -> None:
    class Refuse(_Counting):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            if address.startswith("no"):
                return "550 5.1.1 mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    handler = Refuse(tmp_path)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=care@clinic.example"
    try:
        with smtpconn.reusing_connections(max_messages=10, idle_seconds=60) as pool:
            with pytest.raises(PermanentDeliveryError, match="SMTP reply 550"):
                send_email(url, "nobody@example.org", EMAIL, timeout_seconds=2)
            send_email(url, "pat@example.org", EMAIL, timeout_seconds=2)
            assert pool is not None and (pool.opened, pool.reuses) == (2, 0)
    finally:
        controller.stop()
    assert len(list_mail(tmp_path)) == 1


def test_routes_are_hosts_and_limits_apply_per_route() -> None:
    assert route_of("mailtos://user:secret@SMTP.Example.org:587?from=a@b.example") == "smtp.example.org"
    assert route_of("json://gateway.example/sms") == "gateway.example"
    limits = RouteLimits()
    limits.configure({"smtp.example.org": 2}, default=3)
    assert (limits.limit("smtp.example.org"), limits.limit("other.example")) == (2, 3)
    held: list[str] = []
    with limits.slot("mailto://smtp.example.org"), limits.slot("mailto://smtp.example.org"):
        got = threading.Event()

        def third() -> None:
            with limits.slot("mailto://smtp.example.org") as route:
                held.append(route)
                got.set()

        thread = threading.Thread(target=third)
        thread.start()
        assert not got.wait(0.3), "a third send waits while the route's two slots are taken"
    thread.join(5)
    assert held == ["smtp.example.org"]


def test_a_warm_consumer_sends_what_arrives_while_it_polls(
    db: Session, clinic: Clinic, settings: Settings, counting: tuple[_Counting, int]
) -> None:
    handler, port = counting
    settings = _pointed_at(settings, port, drain_poll_seconds=0.1)
    totals: dict[str, int] = {}
    progress: list[dict[str, int]] = []
    consumer = threading.Thread(
        target=lambda: totals.update(
            outbox.consume(seconds=4, settings=settings, on_progress=progress.append, progress_seconds=0.5)
        )
    )
    consumer.start()
    try:
        _record(db, 1)  # no event, no run started for it: only the consumer's next poll finds it
    finally:
        consumer.join(30)
    assert not consumer.is_alive()
    assert (totals["planned"], totals["claimed"], totals["sent"]) == (1, 1, 1)
    assert progress and progress[-1]["sent"] == 1
    [n] = _notes(db)
    assert n.status == "sent" and len(list_mail(handler.directory)) == 1
