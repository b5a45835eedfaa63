"""Check-in times in the patient's calendar and emails are the times the check-ins are really sent.

Sessions are recorded and the real pipeline (planning, dispatch, outbox) runs pass by pass on a simulated
clock against a real SMTP sink, on SQLite and PostgreSQL. Every calendar file the patient receives is folded
the way a calendar program does (by UID; a higher SEQUENCE replaces, METHOD:CANCEL removes) and compared with
when each check-in email went out."""

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func
from sqlmodel import Session, col, select

from models import Clinic, Contact, Notification, NotificationStatus
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import start_capture
from needlecare.followup import dispatch, outbox
from needlecare.followup.icalendar import installation_domain
from needlecare.intake import ingest
from tests.factories import event_body

NY = ZoneInfo("America/New_York")
# A late Monday session: its 24 h check falls at 22:30, inside quiet hours (21:00-08:00).
A = datetime(2026, 10, 5, 22, 30, tzinfo=NY)


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    directory = settings.resolved_mail_capture_dir
    controller: Controller = start_capture(directory, port=settings.smtp_capture_port)
    yield directory
    controller.stop()


@dataclass
class Mail:
    subject: str
    text: str  # the plain-text part, runs of white space as one space
    calendars: dict[str, str]  # attachment name -> iCalendar text


@dataclass(frozen=True)
class Event:
    uid: str
    sequence: int
    start: datetime
    method: str


def _mails(directory: Path) -> list[Mail]:
    out = []
    for path in sorted(directory.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text, calendars = "", dict[str, str]()
        for part in msg.walk():
            if part.is_multipart():
                continue
            name = part.get_filename()
            if name:
                calendars[name] = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
            elif part.get_content_type() == "text/plain" and not text:
                text = str(part.get_content())
        out.append(Mail(str(msg["Subject"]), " ".join(text.split()), calendars))  # wrapped lines joined
    return out


def _events(ics: str) -> list[Event]:
    lines = ics.replace("\r\n ", "").split("\r\n")
    method = next(line.split(":", 1)[1] for line in lines if line.startswith("METHOD:"))
    events: list[Event] = []
    current: dict[str, str] = {}
    for line in lines:
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT":
            start = datetime.strptime(current["DTSTART"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            events.append(Event(current["UID"], int(current["SEQUENCE"]), start, method))
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key.split(";")[0]] = value
    return events


def _fold(mails: list[Mail]) -> dict[str, Event]:
    """What a calendar program shows after importing every file in order: by UID, the highest SEQUENCE."""
    shown: dict[str, Event] = {}
    for mail in mails:
        for ics in mail.calendars.values():
            for event in _events(ics):
                before = shown.get(event.uid)
                if before is None or event.sequence > before.sequence:
                    shown[event.uid] = event
    return {uid: e for uid, e in shown.items() if e.method != "CANCEL"}


def _simulate(db: Session, settings: Settings, sessions: list[tuple[datetime, datetime]], *, until: datetime) -> None:
    """Run outbox passes at every moment something falls due; ``sessions``: (completed, recorded) pairs."""
    pending = sorted(sessions, key=lambda s: s[1])
    now = pending[0][1]
    for _ in range(500):
        while pending and pending[0][1] <= now:
            completed, _recorded = pending.pop(0)
            number = len(sessions) - len(pending)
            body = event_body(number, completed_at=completed.isoformat(), patient__external_id="PT-1")
            ingest.record(db, ingest.validate(body), actor="test")
        outbox.run_pass(db, now=now, settings=settings)
        db.expire_all()
        waiting = db.exec(
            select(func.min(Notification.due_at)).where(
                col(Notification.status).in_([NotificationStatus.PENDING.value, NotificationStatus.RETRY.value]),
                col(Notification.due_at) > now,
            )
        ).one()
        moments = [m for m in (dispatch.next_due(db, after=now, settings=settings), waiting) if m is not None]
        moments += [recorded for _, recorded in pending]
        if not moments or min(moments) > until:
            return
        now = min(moments)
    raise AssertionError("the simulation did not settle")


def _contacts(db: Session) -> list[Contact]:
    db.expire_all()
    return list(db.exec(select(Contact).order_by(col(Contact.id))).all())


def _uid(contact: Contact, settings: Settings) -> str:
    return f"{contact.idempotency_key.replace(':', '-')}@{installation_domain(settings)}"


def test_the_aftercare_email_lists_times_after_quiet_hours(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    _simulate(db, settings, [(A, A + timedelta(minutes=5))], until=A + timedelta(minutes=5))
    [aftercare] = _mails(sink)
    # due Tue 22:30 and Thu 22:30 (quiet hours): sent at 08:00 the next morning
    assert "Wednesday 7 October, 08:00 (New York time) — 1-day check-in" in aftercare.text
    assert "Friday 9 October, 08:00 (New York time)" in aftercare.text
    assert "22:30" not in aftercare.text.split("Your check-ins")[1]
    starts = sorted(e.start for e in _events(aftercare.calendars["follow-up-checks.ics"]))
    assert starts[0] == datetime(2026, 10, 7, 8, 0, tzinfo=NY)
    assert all(s.astimezone(NY).hour == 8 and s.astimezone(NY).minute == 0 for s in starts), starts


def test_event_uids_name_the_installation(db: Session, clinic: Clinic, settings: Settings, sink: Path) -> None:
    _simulate(db, settings, [(A, A + timedelta(minutes=5))], until=A + timedelta(minutes=5))
    [aftercare] = _mails(sink)
    uids = [e.uid for e in _events(aftercare.calendars["follow-up-checks.ics"])]
    assert uids and all(uid.endswith("@needlecare.test") for uid in uids), uids
    assert len(set(uids)) == len(uids)
    assert installation_domain(settings.model_copy(update={"public_base_url": "https://care.clinic.example"})) == (
        "care.clinic.example"
    )
    local = settings.model_copy(update={"public_base_url": "http://127.0.0.1:8000", "mail_from": "a@riverside.example"})
    assert installation_domain(local) == "riverside.example"


def test_the_calendar_ends_up_with_the_times_check_ins_were_sent(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    """A late session (quiet hours), a second session two days later (the first one's later checks are
    superseded), and an early-morning session four weeks on whose 24 h check takes the outcome survey's day."""
    b = datetime(2026, 10, 7, 10, 0, tzinfo=NY)
    c = datetime(2026, 11, 2, 7, 50, tzinfo=NY)
    sessions = [(s, s + timedelta(minutes=5)) for s in (A, b, c)]
    _simulate(db, settings, sessions, until=datetime(2027, 1, 20, tzinfo=NY))
    mails = _mails(sink)
    contacts = _contacts(db)
    sent = {_uid(ct, settings): ct.sent_at for ct in contacts if ct.sent_at is not None}
    final = _fold(mails)
    assert len(sent) >= 8
    assert {uid: e.start for uid, e in final.items()} == {uid: at.replace(microsecond=0) for uid, at in sent.items()}
    # The second session's aftercare cancels the first session's 72 h and 7 d checks.
    after_b = next(m for m in mails if "cancelled-checks.ics" in m.calendars)
    cancelled = {e.uid: e for e in _events(after_b.calendars["cancelled-checks.ics"])}
    first = {ct.step_id: ct for ct in contacts if ct.session_id == contacts[0].session_id}
    assert set(cancelled) == {_uid(first["check_72h"], settings), _uid(first["check_7d"], settings)}
    assert {e.sequence for e in cancelled.values()} == {1}
    assert (
        "3-day check-in (Friday 9 October, 08:00 (New York time)): will not be sent (your newer session has its own"
        " check-ins)"
    ) in after_b.text
    # The third session's 24 h check goes on Tue 3 Nov at 08:00, so the 4-week survey moves to Wednesday.
    outcome = next(ct for ct in contacts if ct.step_id == "outcome_4wk")
    versions = [
        e for m in mails for ics in m.calendars.values() for e in _events(ics) if e.uid == _uid(outcome, settings)
    ]
    # listed by each aftercare email (the second one repeats it unchanged), then moved once
    assert list(dict.fromkeys((e.sequence, e.start.astimezone(NY)) for e in versions)) == [
        (0, datetime(2026, 11, 3, 8, 0, tzinfo=NY)),
        (1, datetime(2026, 11, 4, 8, 0, tzinfo=NY)),
    ]
    assert outcome.sent_at == datetime(2026, 11, 4, 8, 0, tzinfo=NY)
    moved_in = next(m for m in mails if "4-week progress survey: moved to Wednesday 4 November, 08:00" in m.text)
    assert "After your session" in moved_in.subject


def test_the_next_check_in_email_carries_the_cancellation(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    """A second session recorded too late for its aftercare email: the next message the patient gets (a
    check-in reminder) removes the first session's 7-day check from their calendar."""
    b = datetime(2026, 10, 7, 10, 0, tzinfo=NY)
    recorded = datetime(2026, 10, 9, 12, 0, tzinfo=NY)  # 50 h later: its aftercare is skipped as too old
    _simulate(db, settings, [(A, A + timedelta(minutes=5)), (b, recorded)], until=datetime(2026, 10, 12, tzinfo=NY))
    mails = _mails(sink)
    assert sum("After your session" in m.subject for m in mails) == 1
    carrying = [m for m in mails if "cancelled-checks.ics" in m.calendars]
    assert carrying, [m.subject for m in mails]
    assert "check-in" in carrying[0].subject.lower() and "After your session" not in carrying[0].subject
    contacts = _contacts(db)
    seven_day = next(ct for ct in contacts if ct.step_id == "check_7d" and ct.session_id == contacts[0].session_id)
    [event] = _events(carrying[0].calendars["cancelled-checks.ics"])
    assert (event.uid, event.sequence, event.method) == (_uid(seven_day, settings), 1, "CANCEL")
    assert "1-week check-in (Tuesday 13 October, 08:00 (New York time)): will not be sent" in carrying[0].text
    assert len(carrying) == 1, "the change is sent once"
