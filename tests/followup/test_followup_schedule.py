"""The follow-up calendar, table-driven: for every injury, a session at time T yields — across
dispatch passes from T to T + 13 weeks — exactly the planned messages at the planned local times,
none in quiet hours, none after an opt-out, none for a step already answered, each reminder once."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from models import Clinic, Contact, Notification, Patient
from needlecare.core import clock
from needlecare.core.catalogue import get_catalogue
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import list_mail, start_capture
from needlecare.followup import outbox
from needlecare.followup.protocol_schema import Protocol
from needlecare.followup.protocols import get_protocol
from needlecare.intake import ingest
from tests.factories import event_body

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday; DST changes in the run are part of the test
QUIET = (21, 8)


@dataclass(frozen=True)
class Case:
    injury: str
    timezone: str
    local_hour: int  # when the session ended, local time
    scenario: str  # plain | answer_24h | opt_out_day5 | no_consent


INJURIES = sorted(get_catalogue().injuries)
ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles"]
SCENARIOS = ["plain", "answer_24h", "opt_out_day5", "plain", "no_consent"]
CASES = [
    Case(injury, ZONES[i % len(ZONES)], [17, 22, 6, 13, 20][i % 5], SCENARIOS[i % len(SCENARIOS)])
    for i, injury in enumerate(INJURIES)
]


def _session_time(case: Case) -> datetime:
    local = START.astimezone(ZoneInfo(case.timezone)).replace(hour=case.local_hour, minute=0) + timedelta(days=1)
    return local.astimezone(UTC)


def _on_grid(moment: datetime) -> datetime:
    """Passes run on the hour (UTC): a message due at 07:30 goes at the 08:00 pass."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if hour == moment else hour + timedelta(hours=1)


def _when(moment: datetime, tz: str) -> datetime:
    """The pass that sends a message due at ``moment``: outside quiet hours, on the grid."""
    return _on_grid(clock.next_allowed(_on_grid(moment), tz, *QUIET))


def _expected(case: Case, completed: datetime, protocol: Protocol) -> list[tuple[str, int, datetime]]:
    """(step, sequence, when) for every message the protocol says this patient gets."""
    if case.scenario == "no_consent":
        return []
    out = []
    for step in protocol.steps:
        opens = completed + timedelta(hours=step.offset_hours)
        closes = completed + timedelta(hours=step.window_end_hours)
        sent = _when(opens, case.timezone)
        if sent >= closes:
            continue
        out.append((step.id, 0, sent))
        if case.scenario == "answer_24h" and step.id == "check_24h":
            continue
        for number, hours in enumerate(step.reminder_hours, start=1):
            due = sent + timedelta(hours=hours)
            if due >= closes:
                continue
            when = _when(due, case.timezone)
            if when < closes:
                out.append((step.id, number, when))
    if case.scenario == "opt_out_day5":
        cutoff = completed + timedelta(days=5)
        out = [m for m in out if m[2] < cutoff]
    return out


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    controller = start_capture(settings.resolved_mail_capture_dir, port=settings.smtp_capture_port)
    yield settings.resolved_mail_capture_dir
    controller.stop()


def test_thirteen_weeks_of_dispatch_passes_send_exactly_the_plan(
    db: Session, clinic: Clinic, settings: Settings, sink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"quiet_hours_start": QUIET[0], "quiet_hours_end": QUIET[1]})
    sessions: dict[int, tuple[Case, datetime]] = {}
    for n, case in enumerate(CASES, start=1):
        completed = _session_time(case)
        # Each event arrives ten minutes after its session, whatever today's date is: ingest checks completed_at
        # against its own clock (refused once more than a year old), and START is fixed for its DST changes.
        monkeypatch.setattr(ingest, "utcnow", lambda at=completed: at + timedelta(minutes=10))
        body = event_body(
            n,
            injury=case.injury,
            completed_at=completed.isoformat(),
            patient__timezone=case.timezone,
            patient__consent={"email": case.scenario != "no_consent"},
            baseline__rom=None,
        )
        recorded = ingest.record(db, ingest.validate(body), actor="test")
        sessions[recorded.session_id] = (case, completed)

    first = min(c for _, c in sessions.values())
    last = first + timedelta(weeks=13, days=2)
    now = first.replace(minute=0)
    while now <= last:
        _apply_patient_actions(db, sessions, now)
        outbox.run_pass(db, now=now, settings=settings)
        now += timedelta(hours=1)

    db.expire_all()
    for sid, (case, completed) in sessions.items():
        protocol = get_protocol(case.injury)
        patient_id = db.exec(select(Contact.patient_id).where(Contact.session_id == sid)).first()
        sent = db.exec(
            select(Notification, Contact)
            .join(Contact, col(Notification.contact_id) == Contact.id)
            .where(Contact.patient_id == patient_id, Notification.status == "sent")
        ).all()
        # sent_at is the moment of the send: the pass's time plus the seconds the pass took to reach it
        actual = sorted((c.step_id, n.sequence, _minute(n.sent_at)) for n, c in sent)
        expected = sorted(_expected(case, completed, protocol))
        assert actual == expected, f"{case}: sent {actual}\nplanned {expected}"
        for _, _, when in actual:
            assert when is not None
            assert not clock.in_quiet_hours(when, case.timezone, *QUIET), f"{case}: message at {when} in quiet hours"
        contacts = db.exec(select(Contact).where(Contact.patient_id == patient_id)).all()
        assert {c.step_id for c in contacts} == {s.id for s in protocol.steps}, "one contact per step"
        for c in contacts:
            if c.status == "skipped":
                assert c.skip_reason, "every skip says why"
        if case.scenario == "no_consent":
            assert {c.skip_reason for c in contacts} == {"no consent to email; no consent to SMS"}  # steps allow both
        if case.scenario == "opt_out_day5":
            later = [c for c in contacts if c.due_at >= completed + timedelta(days=5)]
            assert later and all(c.skip_reason == "patient opted out" for c in later)
    mails = list_mail(sink, limit=10_000)
    keys = [m.headers["X-Needlecare-Notification"] for m in mails]
    assert len(keys) == len(set(keys)), "no message twice"
    assert all(m.headers.get("List-Unsubscribe", "").startswith("<http") for m in mails)
    assert all(m.headers.get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click" for m in mails)


def _apply_patient_actions(db: Session, sessions: dict[int, tuple[Case, datetime]], now: datetime) -> None:
    for sid, (case, completed) in sessions.items():
        if case.scenario == "answer_24h":
            contact = db.exec(
                select(Contact).where(
                    Contact.session_id == sid, Contact.step_id == "check_24h", Contact.status == "sent"
                )
            ).first()
            if contact is not None:  # answered within an hour of going out
                contact.status, contact.answered_at = "answered", now
                db.add(contact)
                db.commit()
        if case.scenario == "opt_out_day5" and now >= completed + timedelta(days=5):
            patient_id = db.exec(select(Contact.patient_id).where(Contact.session_id == sid)).first()
            patient = db.get(Patient, patient_id)
            if patient is not None and patient.opted_out_at is None:
                patient.opted_out_at = now
                db.add(patient)
                db.commit()


def _minute(when: datetime | None) -> datetime | None:
    return when.replace(second=0, microsecond=0) if when is not None else None
