"""Check-ins and reminders by text: the channel picked at send time, against a real HTTP gateway on loopback
(what Apprise's json:// posts is recorded), a real SMTP sink and a real database (SQLite and PostgreSQL)."""

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from models import Clinic, Contact, InboundAction, Notification, Patient, SmsInbound
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import list_mail, start_capture
from needlecare.followup import outbox, sms_text
from needlecare.followup.protocols import get_protocol
from needlecare.intake import ingest
from tests.factories import PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE, event_body

SMS_ONLY = {"patient__consent": {"email": False, "sms": True}, "patient__email": None}
BOTH = {"patient__consent": {"email": True, "sms": True}}


@dataclass
class Gateway:
    """A tiny HTTP SMS gateway: records every post, answers ``status`` (or holds the answer ``hold`` seconds)."""

    server: ThreadingHTTPServer
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    hold: float = 0.0
    on_post: Any = None  # called with the recorded post before the answer goes back

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/sms?:to={{to}}"


def start_gateway() -> Gateway:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            parts = urlsplit(self.path)
            post = {"path": parts.path, "query": parse_qs(parts.query), **body}
            gateway.received.append(post)
            if gateway.on_post is not None:
                gateway.on_post(post)
            if gateway.hold:
                threading.Event().wait(gateway.hold)
            self.send_response(gateway.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    gateway = Gateway(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=gateway.server.serve_forever, daemon=True).start()
    return gateway


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = start_gateway()
    yield gw
    gw.server.shutdown()
    gw.server.server_close()


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    directory = settings.resolved_mail_capture_dir
    controller: Controller = start_capture(directory, port=settings.smtp_capture_port)
    yield directory
    controller.stop()


@pytest.fixture
def sms_settings(settings: Settings, gateway: Gateway) -> Settings:
    """The gateway as the SMS route; no quiet hours (passes run at any hour of the test's clock)."""
    return settings.model_copy(update={"patient_sms_url": gateway.url, "quiet_hours_start": 0, "quiet_hours_end": 0})


def record(db: Session, n: int, **overrides: object) -> datetime:
    """Record session ``n`` (completed 30 minutes ago); returns when its 1-day check-in falls due."""
    completed = utcnow() - timedelta(minutes=30)
    body = event_body(n, completed_at=completed.isoformat(), **overrides)
    ingest.record(db, ingest.validate(body), actor="test")
    return completed + timedelta(hours=24, minutes=1)


def rows(db: Session, step: str = "check_24h") -> list[Notification]:
    db.expire_all()
    query = select(Notification).join(Contact).where(Contact.step_id == step).order_by(Notification.sequence)
    return list(db.exec(query).all())


def patient(db: Session) -> Patient:
    db.expire_all()
    found = db.exec(select(Patient)).one()
    return found


def test_an_sms_only_patient_gets_the_check_in_by_text(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    due = record(db, 1, **SMS_ONLY)
    outbox.run_pass(db, now=due, settings=sms_settings)
    aftercare = db.exec(select(Notification).where(Notification.kind == "aftercare")).one()
    assert (aftercare.status, aftercare.skip_reason) == ("skipped", "no consent to email")
    first, reminder = rows(db)
    assert (first.status, first.channel) == ("sent", "sms")
    assert (reminder.status, reminder.channel) == ("pending", "sms")
    [text] = gateway.received
    assert text["to"] == PATIENT_PHONE and text["path"] == "/sms"
    body = text["message"]
    assert body.startswith("Riverside Physio: your 1-day check-in is ready: http://needlecare.test/s/")
    assert "reply with 2 numbers: soreness 0-10" in body and "(e.g. 7 0)" in body and "listed at the link" in body
    assert body.endswith("Reply STOP to stop.")
    assert sms_text.segments(body) <= sms_text.MAX_SEGMENTS
    injury = "achilles"
    # Words, not substrings: the link's random token may hold any letters (it once held "sam").
    words = set(re.findall(r"[a-z]+", re.sub(r"https?://\S+", " ", body.lower())))
    for private in (PATIENT_NAME, PATIENT_LAST, injury, "calf", "left", "soleus"):
        assert private.lower() not in words, f"{private!r} must not be in a text"
    assert list_mail(sink) == []


def test_the_text_link_is_the_signed_link_of_the_email(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    record(db, 1, **BOTH)
    due = record(db, 2, **SMS_ONLY, patient__external_id="PT-2", patient__phone="+447700900123")
    outbox.run_pass(db, now=due, settings=sms_settings)
    [text] = gateway.received
    link = next(word for word in text["message"].split() if word.startswith("http"))
    emails = [m for m in list_mail(sink) if "check-in" in m.subject.lower()]
    assert len(emails) == 1 and "http://needlecare.test/s/" in emails[0].text
    assert link.startswith("http://needlecare.test/s/") and link not in emails[0].text  # each contact its own token
    assert text["to"] == "+447700900123"


def test_an_answered_survey_gets_no_text_reminder(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    due = record(db, 1, **BOTH)
    outbox.run_pass(db, now=due, settings=sms_settings)
    first, _ = rows(db)
    assert (first.status, first.channel) == ("sent", "email")
    contact = db.get(Contact, first.contact_id)
    assert contact is not None
    contact.status = "answered"  # what a stored answer does to its contact
    db.add(contact)
    db.commit()
    outbox.run_pass(db, now=due + timedelta(hours=7, minutes=1), settings=sms_settings)
    _, reminder = rows(db)
    assert (reminder.status, reminder.skip_reason) == ("skipped", "answered already")
    assert gateway.received == []


@pytest.mark.parametrize("agreed", [True, False])
def test_an_unanswered_survey_is_reminded_by_text_when_agreed_else_by_email(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path, agreed: bool
) -> None:
    due = record(db, 1, patient__consent={"email": True, "sms": agreed})
    outbox.run_pass(db, now=due, settings=sms_settings)
    outbox.run_pass(db, now=due + timedelta(hours=7, minutes=1), settings=sms_settings)
    first, reminder = rows(db)
    assert (first.status, first.channel) == ("sent", "email")
    assert (reminder.status, reminder.channel) == ("sent", "sms" if agreed else "email")
    check_ins = [m for m in list_mail(sink) if "check-in" in m.subject.lower()]
    if agreed:
        [text] = gateway.received
        assert text["message"].startswith("Riverside Physio: a reminder, your 1-day check-in is still open: ")
        assert "from your aftercare email" in text["message"]
        assert len(check_ins) == 1
    else:
        assert gateway.received == [] and len(check_ins) == 2


def test_after_stop_texts_are_skipped_and_email_still_goes(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    due = record(db, 1, **BOTH)
    outbox.run_pass(db, now=due, settings=sms_settings)
    stopped = patient(db)
    stopped.sms_opted_out_at = due  # what a STOP reply records
    db.add(stopped)
    db.commit()
    outbox.run_pass(db, now=due + timedelta(hours=7, minutes=1), settings=sms_settings)
    _, reminder = rows(db)
    assert (reminder.status, reminder.channel) == ("sent", "email")
    assert gateway.received == []


def test_after_stop_an_sms_only_patient_gets_nothing_and_every_skip_says_why(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    due = record(db, 1, **SMS_ONLY)
    outbox.run_pass(db, now=due, settings=sms_settings)
    assert len(gateway.received) == 1
    stopped = patient(db)
    stopped.sms_opted_out_at = due
    db.add(stopped)
    db.commit()
    outbox.run_pass(db, now=due + timedelta(hours=7, minutes=1), settings=sms_settings)
    _, reminder = rows(db)  # reasons in the order of the step's reminder_channels (sms, email)
    assert (reminder.status, reminder.skip_reason) == ("skipped", "SMS opted out (replied STOP); no consent to email")
    why = "no consent to email; SMS opted out (replied STOP)"  # the check-in's channels: email, sms
    three_days = due + timedelta(hours=48)
    outbox.run_pass(db, now=three_days, settings=sms_settings)
    db.expire_all()
    later = db.exec(select(Contact).where(Contact.step_id == "check_72h")).one()
    assert (later.status, later.skip_reason) == ("skipped", why)
    assert len(gateway.received) == 1


def test_the_unsubscribe_link_stops_texts_too(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    due = record(db, 1, **BOTH)
    outbox.run_pass(db, now=due, settings=sms_settings)
    gone = patient(db)
    gone.opted_out_at = due
    db.add(gone)
    db.commit()
    outbox.run_pass(db, now=due + timedelta(hours=7, minutes=1), settings=sms_settings)
    _, reminder = rows(db)
    assert (reminder.status, reminder.skip_reason) == ("skipped", "patient opted out")
    assert gateway.received == []


def test_without_an_sms_route_an_sms_only_check_in_is_skipped_with_the_reason(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    assert settings.resolved_patient_sms_url is None  # env=test: no SMS unless PATIENT_SMS_URL is set
    quiet_free = settings.model_copy(update={"quiet_hours_start": 0, "quiet_hours_end": 0})
    due = record(db, 1, **SMS_ONLY)
    outbox.run_pass(db, now=due, settings=quiet_free)
    db.expire_all()
    contact = db.exec(select(Contact).where(Contact.step_id == "check_24h")).one()
    assert (contact.status, contact.skip_reason) == ("skipped", "no consent to email; no SMS route configured")
    assert rows(db) == []


def test_a_clinics_own_sms_route_overrides_the_installations(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    own = start_gateway()
    try:
        clinic.sms_url = own.url
        db.add(clinic)
        db.commit()
        due = record(db, 1, **SMS_ONLY)
        outbox.run_pass(db, now=due, settings=sms_settings)
        assert gateway.received == [] and len(own.received) == 1
    finally:
        own.server.shutdown()
        own.server.server_close()


def _reply(db: Session, patient_id: int, action: InboundAction, text: str, n: int) -> Notification:
    inbound = SmsInbound(
        provider_message_id=f"in-{n}", from_phone=PATIENT_PHONE, body="x", patient_id=patient_id, action=action.value
    )
    inbound.reply_text = text
    db.add(inbound)
    db.flush()
    row = Notification(
        idempotency_key=f"sms_reply:{inbound.id}",
        kind="sms_reply",
        channel="sms",
        patient_id=patient_id,
        sms_inbound_id=inbound.id,
        due_at=utcnow(),
    )
    db.add(row)
    db.commit()
    return row


def test_the_answer_to_stop_goes_after_the_opt_out_and_no_other_text_does(
    db: Session, clinic: Clinic, sms_settings: Settings, gateway: Gateway, sink: Path
) -> None:
    record(db, 1, **SMS_ONLY)
    stopped = patient(db)
    stopped.sms_opted_out_at = utcnow()
    db.add(stopped)
    db.commit()
    assert stopped.id is not None
    confirm = _reply(db, stopped.id, InboundAction.STOP, "Riverside Physio: you will get no more texts.", 1)
    other = _reply(db, stopped.id, InboundAction.UNPARSED, "Riverside Physio: we did not understand.", 2)
    outbox.run_pass(db, now=utcnow(), settings=sms_settings)
    db.expire_all()
    sent, skipped = db.get(Notification, confirm.id), db.get(Notification, other.id)
    assert sent is not None and (sent.status, sent.channel) == ("sent", "sms")
    assert skipped is not None and (skipped.status, skipped.skip_reason) == ("skipped", "SMS opted out (replied STOP)")
    assert [(r["to"], r["message"]) for r in gateway.received] == [
        (PATIENT_PHONE, "Riverside Physio: you will get no more texts.")
    ]


def test_the_packs_allow_texts_where_domain_4_3_says() -> None:
    protocol = get_protocol("achilles_tendinopathy")
    day1 = protocol.step("check_24h")
    assert (day1.channels, day1.reminder_channels) == (["email", "sms"], ["sms", "email"])
    assert day1.sms_reply_questions == ["soreness", "redflags"]
    for step in protocol.steps:
        if step.id.startswith("outcome_"):
            assert step.reminder_channels == ["sms", "email"], step.id
