"""The demo clinic: a small cohort through the real pipeline (SQLite and PostgreSQL), re-runs, the bulk loader and
the command. What lands in the database is checked against the cohort's plan independently of the demo's counts."""

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from models import (
    Alert,
    AlertStatus,
    AuditEvent,
    CaseStatus,
    Clinic,
    Contact,
    ContactStatus,
    Episode,
    EscalationCase,
    Notification,
    NotificationStatus,
    Patient,
    Practitioner,
    ReportSnapshot,
    SurveyResponse,
    TreatmentSession,
)
from models.base import utcnow
from needlecare.cli.main import app
from needlecare.core import clock, events
from needlecare.core import db as database
from needlecare.core.settings import Settings, get_settings
from needlecare.demo.bulk import bulk_load
from needlecare.demo.clinic import DemoRefused
from needlecare.demo.cohort import Cohort, generate_cohort
from needlecare.demo.simulation import run_demo
from needlecare.demo.trajectories import PlannedAnswer
from needlecare.demo.transfer import NOT_SENT
from needlecare.followup.protocols import get_protocol
from tests.conftest import add_test_clinic

CLINIC = "demo-clinic"
FINAL = (ContactStatus.ANSWERED.value, ContactStatus.EXPIRED.value, ContactStatus.SKIPPED.value)


def _now() -> datetime:
    return utcnow().replace(microsecond=0)


def _cohort(patients: int, now: datetime, seed: int = 7) -> Cohort:
    return generate_cohort(patients, seed, start=(now - timedelta(weeks=14)).replace(minute=0, second=0))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.args!r}")


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log record of every logger while the test runs (pytest's logging plugin may be off)."""
    handler, root = _Records(), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(previous)


def _plans(cohort: Cohort) -> dict[tuple[str, str | None, str], PlannedAnswer]:
    return {
        (p.external_id, s.external_id if s else None, plan.step_id): plan for p in cohort for s, plan in p.planned()
    }


def _contacts(db: Session, clinic: str) -> list[tuple[Contact, str, str | None]]:
    rows = db.exec(
        select(Contact, Patient.external_id, TreatmentSession.external_session_id)
        .join(Patient, col(Patient.id) == Contact.patient_id)
        .outerjoin(TreatmentSession, col(TreatmentSession.id) == Contact.session_id)
        .where(Patient.clinic_id == clinic)
        .order_by(col(Contact.id))
    ).all()
    return [(c, p, s) for c, p, s in rows]


def _count(db: Session, model: type, clinic: str | None = None) -> int:
    query = select(func.count()).select_from(model)
    if clinic is not None and model is Patient:
        query = query.where(Patient.clinic_id == clinic)
    return int(db.exec(query).one())


def test_a_small_cohort_goes_through_the_real_pipeline(
    db: Session, settings: Settings, emitted: list[events.AppEvent], log_lines: list[str]
) -> None:
    now = _now()
    cohort = _cohort(12, now)
    result = run_demo(db, cohort, settings=settings, clinic_id=CLINIC, until=now)

    happened = [s for p in cohort for s in p.sessions if s.completed_at <= now]
    assert result.sessions_recorded == len(happened) == _count(db, TreatmentSession)
    assert result.sessions_to_come == cohort.session_count - len(happened)
    assert _count(db, Patient, CLINIC) == len(cohort) and _count(db, Episode) == len(cohort)
    assert not db.exec(select(TreatmentSession).where(col(TreatmentSession.planned_at).is_(None))).first()

    # Independently of the demo's counters: a contact is answered exactly when the dispatcher opened it and the
    # patient's planned answer (sent + delay) fell inside its window and before now.
    plans = _plans(cohort)
    expected_answered, opened = set(), 0
    for contact, patient_ext, session_ext in _contacts(db, CLINIC):
        assert contact.status in FINAL, "only final check-ins are copied"
        plan = plans[(patient_ext, session_ext, contact.step_id)]
        if contact.sent_at is None:
            assert contact.status == ContactStatus.SKIPPED.value
            continue
        opened += 1
        tz = db.get(Patient, contact.patient_id).timezone  # type: ignore[union-attr]
        assert not clock.in_quiet_hours(contact.sent_at, tz, settings.quiet_hours_start, settings.quiet_hours_end)
        if plan.delay_hours is not None:
            at = contact.sent_at + timedelta(hours=plan.delay_hours)
            if at < contact.window_closes_at and at <= now:
                expected_answered.add(contact.id)
    responses = db.exec(select(SurveyResponse)).all()
    assert {r.contact_id for r in responses} == expected_answered
    assert len(responses) == result.answers_recorded > 20
    assert result.checks_left_out > 0, "check-ins still planned or open now are left out"
    assert opened + result.checks_left_out >= result.contacts_opened
    assert result.answers_refused == result.answers_closed == 0

    for response in responses:
        row = db.get(Contact, response.contact_id)
        assert row is not None and row.status == ContactStatus.ANSWERED.value
        assert row.sent_at is not None and row.sent_at <= response.submitted_at < row.window_closes_at
        assert response.channel in ("api", "sms")
    by_contact = {c.id: (c, p, s) for c, p, s in _contacts(db, CLINIC)}
    for response in responses:
        contact, patient_ext, session_ext = by_contact[response.contact_id]
        plan = plans[(patient_ext, session_ext, contact.step_id)]
        assert contact.sent_at is not None and plan.delay_hours is not None
        assert response.submitted_at == contact.sent_at + timedelta(hours=plan.delay_hours), "answered when planned"
        planned = plan.answers
        if response.channel == "sms":  # a text reply holds only what a reply answers (soreness, no warning sign)
            step = get_protocol(contact.injury).step(contact.step_id)
            assert step.sms_reply_questions and response.redflags == ["none"]
            planned = {q: v for q, v in planned.items() if q in step.sms_reply_questions}
        for field in ("nprs_usual", "soreness", "groc15", "bruise", "ran"):
            assert getattr(response, field) == planned.get(field), field
        if planned.get("redflags", ["none"]) != ["none"]:
            assert response.advice_tier in ("EMERGENCY", "SAME_DAY"), "a red flag shows urgent advice"
        assert response.contact_id in by_contact

    # The outbox rows dispatch wrote are there, none waiting: a check-in's messages due while it was open are
    # history (sent at their due time, never attempted: the demo sends nothing), the rest skipped.
    statuses = set(db.exec(select(Notification.status, Notification.skip_reason, Notification.attempts)).all())
    assert statuses == {(NotificationStatus.SENT.value, None, 0), (NotificationStatus.SKIPPED.value, NOT_SENT, 0)}
    assert _count(db, Notification) == result.messages_not_sent + result.messages_in_history
    assert result.messages_not_sent > 0 and result.messages_in_history > 0
    for message in db.exec(select(Notification).where(Notification.status == NotificationStatus.SENT.value)).all():
        contact = db.get(Contact, message.contact_id)
        assert message.kind in ("survey", "reminder") and contact is not None and message.sent_at == message.due_at
        assert message.due_at < contact.window_closes_at and message.due_at <= now
        assert contact.answered_at is None or message.due_at <= contact.answered_at
    cases = db.exec(select(EscalationCase)).all()
    assert cases and all(c.status == CaseStatus.RESOLVED.value and c.resolved_at is not None for c in cases)
    assert all(c.resolved_at is not None and c.resolved_at < c.due_at for c in cases), "resolved within the SLA"
    assert not db.exec(select(Alert).where(Alert.status != AlertStatus.SKIPPED.value)).first()
    assert result.cases_resolved == len(cases)

    assert emitted == [], "no event left the process"
    current = events.set_emitter(emitted.append)
    assert current == emitted.append, "the emitter is restored"
    seeded = db.exec(select(AuditEvent).where(AuditEvent.action == "demo.seeded")).one()
    assert seeded.detail["seed"] == 7 and seeded.detail["answers"] == result.answers_recorded

    names = [p.last_name for p in cohort] + [p.email for p in cohort]
    assert not [line for line in log_lines if any(name in line for name in names)], "no patient data in logs"
    assert not any(name in str(result.summary()) for name in names)


def test_a_clinic_holds_one_history_and_the_demo_writes_only_into_its_own(
    db: Session, clinic: Clinic, settings: Settings
) -> None:
    now = _now()
    cohort = _cohort(3, now, seed=11)
    first = run_demo(db, cohort, settings=settings, clinic_id="demo-a", until=now)
    rows = _count(db, Contact)
    with pytest.raises(DemoRefused, match="already holds a demo history"):
        run_demo(db, cohort, settings=settings, clinic_id="demo-a", until=now)
    assert _count(db, Contact) == rows and _count(db, Patient, "demo-a") == 3
    with pytest.raises(DemoRefused, match="not created by the demo"):
        run_demo(db, cohort, settings=settings, clinic_id=clinic.id, until=now)
    assert _count(db, Patient, clinic.id) == 0
    second = run_demo(db, cohort, settings=settings, clinic_id="demo-b", until=now)
    assert (second.answers_recorded, second.sessions_recorded) == (first.answers_recorded, first.sessions_recorded)
    sessions = db.exec(select(TreatmentSession.external_session_id, TreatmentSession.clinic_id)).all()
    assert len(sessions) == len(set(sessions)) == 2 * first.sessions_recorded


def test_worker_processes_write_the_same_history_as_one_process(db: Session, settings: Settings) -> None:
    """The patients are independent, so two shards simulated side by side give exactly the one-process history."""
    now = _now()
    cohort = _cohort(6, now, seed=5)
    single = run_demo(db, cohort, settings=settings, clinic_id="demo-a", until=now)
    sharded = run_demo(db, cohort, settings=settings, clinic_id="demo-b", until=now, workers=2)

    def state(clinic: str) -> list[tuple[object, ...]]:
        return sorted(
            ((p, s, c.step_id, c.status, c.sent_at, c.answered_at, c.skip_reason) for c, p, s in _contacts(db, clinic)),
            key=str,
        )

    assert state("demo-b") == state("demo-a") and state("demo-a")
    assert sharded.summary() | {"clinic": "", "seconds": 0, "copy_seconds": 0} == single.summary() | {
        "clinic": "",
        "seconds": 0,
        "copy_seconds": 0,
    }
    practitioners = db.exec(select(Practitioner.clinic_id, Practitioner.external_id)).all()
    assert len(practitioners) == len(set(practitioners)), "the workers' practitioners are one set"
    # The same cases, each resolved within its SLA. (A missed-check case opens at the first sweep after its
    # window closed, and when that sweep runs depends on what else the worker's clock meets, as in production.)
    cases = {
        clinic: sorted(
            (patient, case.tier, case.status, case.resolved_at is not None and case.resolved_at < case.due_at)
            for case, patient in db.exec(
                select(EscalationCase, Patient.external_id)
                .join(Patient, col(Patient.id) == EscalationCase.patient_id)
                .where(EscalationCase.clinic_id == clinic)
            ).all()
        )
        for clinic in ("demo-a", "demo-b")
    }
    assert cases["demo-a"] == cases["demo-b"] and cases["demo-a"]
    assert {resolved for *_, resolved in cases["demo-a"]} == {True}


def test_bulk_load_writes_the_same_shapes_of_rows(db: Session, settings: Settings) -> None:
    now = _now()
    cohort = _cohort(30, now, seed=5)
    result = bulk_load(db, cohort, settings=settings, clinic_id=CLINIC, now=now, batch=7)

    patients = [p for p in cohort if p.episode_start <= now]
    sessions = [s for p in patients for s in p.sessions if s.completed_at <= now]
    steps = {p.injury: get_protocol(p.injury).steps for p in patients}
    contacts = sum(
        sum(1 for step in steps[p.injury] if step.scope == "episode")
        + sum(1 for s in p.sessions if s.completed_at <= now)
        * sum(1 for st in steps[p.injury] if st.scope == "session")
        for p in patients
    )
    assert (result.patients, result.sessions, result.episodes) == (len(patients), len(sessions), len(patients))
    assert result.contacts == contacts == _count(db, Contact)
    assert result.responses == _count(db, SurveyResponse) > 50
    assert _count(db, TreatmentSession) == len(sessions) and _count(db, Patient, CLINIC) == len(patients)
    assert (
        result.rows
        == sum(
            _count(db, model) for model in (Patient, Episode, TreatmentSession, Contact, SurveyResponse, Notification)
        )
        + result.practitioners
    )
    assert result.messages == _count(db, Notification) > result.contacts / 2, "the check-ins' messages that went out"
    answered = db.exec(select(Contact).where(Contact.status == ContactStatus.ANSWERED.value)).all()
    assert len(answered) == result.responses
    assert all(c.answered_at is not None and c.answered_at < c.window_closes_at for c in answered)
    assert not db.exec(select(Contact).where(col(Contact.due_at) > now, Contact.status != "planned")).first()
    tiers = db.exec(select(SurveyResponse.advice_tier).where(col(SurveyResponse.advice_tier).is_not(None))).all()
    assert tiers, "the rule engine ran on the bulk answers"
    with pytest.raises(ValueError, match="already holds"):
        bulk_load(db, cohort, settings=settings, clinic_id=CLINIC, now=now)


def test_refuses_a_production_database() -> None:
    production = Settings(env="production", secret_key="p" * 40, patient_email_url="mailtos://user:pw@smtp.example.org")
    with Session(create_engine("sqlite://")) as db:
        with pytest.raises(DemoRefused):
            run_demo(db, _cohort(1, _now()), settings=production)
        with pytest.raises(DemoRefused):
            bulk_load(db, _cohort(1, _now()), settings=production)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NEEDLECARE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_command_runs_reports_counts_only_and_writes_one_history(env: Path, log_lines: list[str]) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--patients", "4", "--start", "10w"])
    assert first.exit_code == 0, first.output
    assert f"Demo clinic '{CLINIC}': 4 synthetic patients (seed 7)" in first.output
    assert "(demo history: not sent)" in first.output and "lead@demo-clinic.example" in first.output
    recorded = int(first.output.split("sessions")[1].split("recorded")[0])
    assert recorded > 0
    assert "Dashboard figures stored for 4 of 4 preset view(s)" in first.output
    with Session(database.get_engine()) as db:
        stored = db.exec(select(ReportSnapshot.view_key).where(ReportSnapshot.clinic_id == CLINIC)).all()
        sessions = _count(db, TreatmentSession)
    assert "injury=*;practitioner=*;since=-;until=-" in stored and len(stored) == 4
    assert sessions == recorded
    again = runner.invoke(app, ["demo", "--patients", "4"])
    assert again.exit_code == 0, again.output
    assert "already holds a demo history (seed 7, 4 patients" in again.output and "nothing written" in again.output
    with Session(database.get_engine()) as db:
        assert _count(db, TreatmentSession) == sessions
    for output in (first.output, again.output, *log_lines):
        assert "Demo Patient" not in output and "Patient 000" not in output and "demo-000" not in output

    with Session(database.get_engine()) as db:
        add_test_clinic(db)
    live = runner.invoke(app, ["demo", "--patients", "4", "--clinic", "riverside-physio"])
    assert live.exit_code == 2 and "not created by the demo" in live.output

    bad = runner.invoke(app, ["demo", "--start", "tomorrow", "--clinic", "demo-other"])
    assert bad.exit_code == 2 and "--start" in bad.output
    future = runner.invoke(app, ["demo", "--start", (utcnow() + timedelta(days=1)).isoformat(), "--clinic", "x-y"])
    assert future.exit_code == 2 and "in the past" in future.output
