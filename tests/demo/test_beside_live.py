"""The demo beside a running stack (SQLite and PostgreSQL): the live passes of ``make run``'s dispatch flow, as of the
real time, run on the same database before, during and after the demo, and act on nothing of the demo's; the demo
changes nothing of the live clinic; its cohort arrives whole (the answers it reports are the answers stored)."""

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from models import (
    Alert,
    Clinic,
    Contact,
    ContactStatus,
    EscalationCase,
    Notification,
    NotificationStatus,
    Patient,
    SurveyResponse,
    TreatmentSession,
)
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.demo.cohort import generate_cohort
from needlecare.demo.simulation import run_demo
from needlecare.demo.transfer import NOT_SENT
from needlecare.dev.mailcapture import list_mail, start_capture
from needlecare.followup import outbox
from needlecare.intake import ingest
from needlecare.intake.sample import sample_event
from needlecare.safety import alerts, escalation

DEMO = "demo-clinic"


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    directory = settings.resolved_mail_capture_dir
    controller: Controller = start_capture(directory, port=settings.smtp_capture_port)
    yield directory
    controller.stop()


class _LiveStack:
    """``make run``'s dispatch flow in a thread: outbox pass, escalation sweep and alert pass as of the real time."""

    def __init__(self, db_url: str, settings: Settings) -> None:
        self.db_url, self.settings = db_url, settings
        self.passes: list[tuple[datetime, outbox.PassResult, escalation.SweepResult, Any]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with Session(database.get_engine(self.db_url), expire_on_commit=False) as db:
            while not self._stop.is_set():
                try:
                    now = utcnow()
                    result = outbox.run_pass(db, now=now, settings=self.settings)
                    swept = escalation.sweep(db, now=now)
                    sent = alerts.send_due(db, now=now, settings=self.settings)
                    self.passes.append((now, result, swept, sent))
                except Exception as exc:  # reported by the test
                    self.errors.append(exc)
                    db.rollback()
                time.sleep(0.02)

    def __enter__(self) -> "_LiveStack":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def wait_for(self, passes: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.passes) < passes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.passes) >= passes, f"the live stack ran {len(self.passes)} passes, errors: {self.errors}"


def _demo_state(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the demo clinic a live pass could change, with the fields it would change."""
    demo_patients = select(Patient.id).where(Patient.clinic_id == DEMO)
    db.expire_all()
    return {
        "contacts": [
            tuple(row)
            for row in db.execute(
                sa_select(
                    col(Contact.id),
                    col(Contact.status),
                    col(Contact.due_at),
                    col(Contact.sent_at),
                    col(Contact.skip_reason),
                )
                .where(col(Contact.patient_id).in_(demo_patients))
                .order_by(col(Contact.id))
            ).all()
        ],
        "messages": [
            tuple(row)
            for row in db.exec(
                select(Notification.id, Notification.status, Notification.attempts, Notification.claimed_at)
                .where(col(Notification.patient_id).in_(demo_patients))
                .order_by(col(Notification.id))
            ).all()
        ],
        "alerts": [
            tuple(row)
            for row in db.exec(
                select(Alert.id, Alert.status, Alert.attempts).where(Alert.clinic_id == DEMO).order_by(col(Alert.id))
            ).all()
        ],
        "cases": [
            tuple(row)
            for row in db.exec(
                select(EscalationCase.id, EscalationCase.status, EscalationCase.realerted_at)
                .where(EscalationCase.clinic_id == DEMO)
                .order_by(col(EscalationCase.id))
            ).all()
        ],
        "sessions": [
            tuple(row)
            for row in db.exec(
                select(TreatmentSession.id, TreatmentSession.planned_at)
                .where(TreatmentSession.clinic_id == DEMO)
                .order_by(col(TreatmentSession.id))
            ).all()
        ],
    }


def test_live_passes_leave_the_demo_alone_and_the_demo_leaves_the_live_clinic_alone(
    db_url: str, db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    recorded = ingest.record(db, ingest.validate(sample_event(clinic.id)), actor="test")
    live_session = recorded.session_id
    now = utcnow().replace(microsecond=0)
    cohort = generate_cohort(10, 7, start=(now - timedelta(weeks=8)).replace(minute=0, second=0))

    with _LiveStack(db_url, settings) as live:
        live.wait_for(1)
        before = len(live.passes)
        result = run_demo(db, cohort, settings=settings, clinic_id=DEMO, until=now)
        during = len(live.passes) - before
        live.wait_for(len(live.passes) + 3)  # and a few passes over the copied history
    assert not live.errors, live.errors
    assert during >= 2, "live passes ran while the demo ran"

    # The live passes served the live clinic (its aftercare notice went out) and nothing of the demo's.
    live_messages = set(db.exec(select(Notification.id).where(Notification.session_id == live_session)).all())
    assert [m.to for m in list_mail(sink)] == [["sam@example.org"]]
    for _, passed, swept, sent in live.passes:
        assert set(passed.notification_ids) <= live_messages
        assert (passed.opened, passed.deferred, passed.expired, passed.skipped) == (0, 0, 0, 0), passed.summary()
        assert (swept.realerted, swept.missed_evaluated, sent.claimed) == (0, 0, 0)

    # The demo's cohort is whole, in final states only: answered as the demo reports, nothing waiting or sent.
    demo_patients = select(Patient.id).where(Patient.clinic_id == DEMO)
    answered = db.exec(
        select(func.count())
        .select_from(Contact)
        .where(col(Contact.patient_id).in_(demo_patients), Contact.status == ContactStatus.ANSWERED.value)
    ).one()
    responses = db.exec(
        select(func.count()).select_from(SurveyResponse).where(col(SurveyResponse.patient_id).in_(demo_patients))
    ).one()
    assert answered == responses == result.answers_recorded > 10
    state = _demo_state(db)
    assert {status for _, status, *_ in state["contacts"]} <= {"answered", "expired", "skipped"}
    # History (sent at its due time) or skipped: final either way, never attempted or claimed.
    assert {(status, attempts, claimed) for _, status, attempts, claimed in state["messages"]} == {
        (NotificationStatus.SENT.value, 0, None),
        (NotificationStatus.SKIPPED.value, 0, None),
    }
    assert set(
        db.exec(
            select(Notification.skip_reason).where(col(Notification.patient_id).in_(demo_patients)).distinct()
        ).all()
    ) == {NOT_SENT, None}
    assert len(state["messages"]) == result.messages_not_sent + result.messages_in_history
    assert all(planned is not None for _, planned in state["sessions"])

    # Nothing of the demo's ever falls due: live passes a year and more ahead leave every demo row as it was.
    later = utcnow() + timedelta(days=400)
    far = outbox.run_pass(db, now=later, settings=settings)
    escalation.sweep(db, now=later)
    alerts.send_due(db, now=later, settings=settings)
    assert _demo_state(db) == state
    assert set(far.notification_ids) <= live_messages

    # The demo changed nothing of the live clinic: one patient, its session planned by the live pass in real time.
    live_row = db.get(TreatmentSession, live_session)
    assert (
        live_row is not None and live_row.planned_at is not None and live_row.planned_at >= now - timedelta(minutes=1)
    )
    assert db.exec(select(func.count()).select_from(Patient).where(Patient.clinic_id == clinic.id)).one() == 1
