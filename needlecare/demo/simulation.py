"""The demo clinic: a synthetic cohort (``needlecare.demo.cohort``) run through the real pipeline on a simulated clock.

``run_demo`` moves a clock from the cohort's first session to ``until`` (default: now), stopping at every moment
something happens, in this order at each moment:

1. every session completed by then is sent as a session-completed body through ``ingest.validate`` and
   ``ingest.record`` (the same checks and idempotent storage as the HTTP API; no Prefect event is emitted),
   then ``planning.plan_pending_sessions`` plans its contacts and aftercare notice;
2. when a contact falls due, ``dispatch.dispatch_due`` runs as of that moment, so check-ins open exactly as in
   production: quiet hours, superseding by a newer session, one survey per patient per day, closed windows;
3. when a patient's planned answer time comes (``delay_hours`` after the check-in went out), the answer goes the
   way the JSON answers API takes it (``needlecare.demo.answering``): a signed link read with
   ``tokens.read_token``, ``surveys.load_contact``, ``surveys.survey_context``, ``answers.validate_answers`` and
   ``surveys.record_answer`` (channel ``api``, in ``store_answer``), as of that moment; ``record_answer``
   evaluates the escalation rules and opens a case, with its practitioner alert queued, when a rule calls for
   one. An answer that would arrive after the window closes is not sent. Events the pipeline emits
   (``needlecare.survey.answered``) are dropped during the run.

Messages. Dispatch writes its outbox rows (aftercare notices, check-in messages and reminders) and the rules
their ``Alert`` rows as they do in production; the demo delivers none of them and never marks one sent. They
stay ``pending`` and the summary reports how many were queued. The next outbox pass (``make run``'s dispatch
flow, or ``needlecare dispatch``) handles them as it would any backlog: aftercare notices older than
``AFTERCARE_MAX_AGE_HOURS`` and messages for check-ins already answered or closed are skipped with their reason;
the few for check-ins still open go to the ``demo-NNNN@example.invalid`` addresses, which in development land in
the local mail capture (``/outbox``). Queued practitioner alerts go wherever the clinic's alert routes say (by
default the clinic's own address) when an alert pass runs.
Run the demo on a development database only (it refuses ``NEEDLECARE_ENV=production``): the dispatcher it runs
is the real one, for every clinic in the database, as of the simulated time.

Re-running on the same clinic duplicates nothing: session ids are deterministic (``DEMO-0042-S1``), so
``ingest.record`` reports them as already recorded, their contacts exist once (unique keys), and answered
check-ins refuse a second answer. What has fallen due since the last run (time moved on) is opened and answered
as the cohort says. ``needlecare demo`` reuses the recorded start of an earlier run with the same seed, so the
cohort's times line up with what is stored.

``bulk_load`` (``needlecare.demo.bulk``) writes the same shapes of rows for benchmarks, bypassing the pipeline.
"""

import heapq
import time as timer
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from models import (
    Alert,
    AlertStatus,
    AuditEvent,
    Contact,
    ContactStatus,
    Notification,
    NotificationStatus,
    Patient,
    TreatmentSession,
)
from models.base import utcnow
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.demo.answering import answer_check
from needlecare.demo.clinic import ACTOR, DemoRefused, ensure_clinic, session_event
from needlecare.demo.cohort import Cohort, SyntheticPatient, SyntheticSession
from needlecare.demo.trajectories import PlannedAnswer
from needlecare.followup.dispatch import DispatchResult, dispatch_due
from needlecare.followup.planning import plan_pending_sessions
from needlecare.intake import ingest
from needlecare.intake.sample import DEMO_CLINIC_ID

SEEDED = "demo.seeded"
DISPATCH_LIMIT = 500
PLAN_LIMIT = 200

Progress = Callable[[datetime], None]
PlanKey = tuple[str, str | None, str]  # patient external id, session external id (None: episode), step id


@dataclass
class DemoResult:
    """Counts only: nothing here names a patient."""

    clinic_id: str
    start: datetime
    until: datetime
    patients: int = 0
    sessions_recorded: int = 0
    sessions_already: int = 0  # recorded by an earlier run
    sessions_rejected: int = 0  # refused by ingest validation (e.g. more than a year ago)
    sessions_to_come: int = 0  # completed after ``until``
    # decisions of the dispatcher passes (which serve every clinic in the database)
    contacts_opened: int = 0
    contacts_deferred: int = 0
    contacts_skipped: int = 0
    answers_recorded: int = 0
    answers_late: int = 0  # the patient would have answered after the window closed
    answers_closed: int = 0  # the link no longer opened (answered or closed meanwhile)
    answers_refused: int = 0  # the validator refused the planned answers (a generator bug)
    answers_after_until: int = 0  # planned for after ``until``
    red_flags: int = 0  # answers that report a red flag (checklist, or a large or spreading bruise)
    advice: Counter[str] = field(default_factory=Counter)  # highest rule tier per answer
    cases_opened: int = 0  # escalation cases the rules opened
    messages_queued: int = 0  # patient messages left pending in the outbox by this run
    alerts_queued: int = 0  # practitioner alerts left pending by this run
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "clinic": self.clinic_id,
            "simulated_from": self.start.isoformat(),
            "simulated_until": self.until.isoformat(),
            "patients": self.patients,
            "sessions_recorded": self.sessions_recorded,
            "sessions_already_recorded": self.sessions_already,
            "sessions_rejected": self.sessions_rejected,
            "sessions_still_to_come": self.sessions_to_come,
            "check_ins_opened": self.contacts_opened,
            "check_ins_skipped": self.contacts_skipped,
            "answers_recorded": self.answers_recorded,
            "answers_too_late": self.answers_late,
            "answers_refused": self.answers_refused + self.answers_closed,
            "red_flags": self.red_flags,
            "rule_tiers": dict(sorted(self.advice.items())),
            "cases_opened": self.cases_opened,
            "messages_queued": self.messages_queued,
            "alerts_queued": self.alerts_queued,
            "seconds": round(self.seconds, 1),
        }


def _discard(_event: events.AppEvent) -> None:
    return None


def previous_run(db: Session, clinic_id: str) -> dict[str, Any] | None:
    """The parameters (seed, patients, start) of the latest demo run on this clinic, if any."""
    row = db.exec(
        select(AuditEvent)
        .where(AuditEvent.action == SEEDED, AuditEvent.entity == "clinic", AuditEvent.entity_id == clinic_id)
        .order_by(col(AuditEvent.id).desc())
    ).first()
    return dict(row.detail) if row is not None else None


def run_demo(
    db: Session,
    cohort: Cohort,
    *,
    settings: Settings,
    clinic_id: str = DEMO_CLINIC_ID,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Run ``cohort`` through ingest, planning, dispatch and answers up to ``until`` (default now); see module doc."""
    if settings.env == "production":
        raise DemoRefused("the demo writes synthetic patients; it does not run with NEEDLECARE_ENV=production")
    began = timer.perf_counter()
    until = until or utcnow()
    ensure_clinic(db, clinic_id, settings)
    previous = events.set_emitter(_discard)
    try:
        result = _Simulation(db, cohort, settings, clinic_id, until, progress).run()
    finally:
        events.set_emitter(previous)
    db.add(
        AuditEvent(
            actor=ACTOR,
            action=SEEDED,
            entity="clinic",
            entity_id=clinic_id,
            detail={
                "seed": cohort.seed,
                "patients": len(cohort),
                "start": cohort.start.isoformat(),
                "span_days": cohort.span_days,
                "until": until.isoformat(),
            },
        )
    )
    db.commit()
    result.seconds = timer.perf_counter() - began
    return result


class _Simulation:
    def __init__(
        self,
        db: Session,
        cohort: Cohort,
        settings: Settings,
        clinic_id: str,
        until: datetime,
        progress: Progress | None,
    ) -> None:
        self.db, self.cohort, self.settings, self.clinic_id, self.until = db, cohort, settings, clinic_id, until
        self.progress = progress
        first = min((p.episode_start for p in cohort), default=until)
        self.result = DemoResult(clinic_id=clinic_id, start=min(first, until), until=until, patients=len(cohort))
        self.plans: dict[PlanKey, PlannedAnswer] = {}
        for patient in cohort:
            for session, plan in patient.planned():
                self.plans[(patient.external_id, session.external_id if session else None, plan.step_id)] = plan
        timeline = sorted(
            ((s.completed_at, p.number, s.number, p, s) for p in cohort for s in p.sessions),
            key=lambda item: item[:3],
        )
        self.sessions = [(when, p, s) for when, _, _, p, s in timeline if when <= until]
        self.result.sessions_to_come = len(timeline) - len(self.sessions)
        self.answers: list[tuple[datetime, int, PlannedAnswer]] = []  # heap of (answer time, contact id, plan)
        self.scheduled: set[int] = set()

    def run(self) -> DemoResult:
        db, result = self.db, self.result
        queued_before, alerts_before = self._pending_messages(), self._pending_alerts()
        self._catch_up()
        index, clock = 0, result.start
        next_due, stale = None, True  # the earliest planned contact; re-read after planning or dispatching
        while True:
            if stale:
                next_due, stale = self._next_due(), False
            next_session = self.sessions[index][0] if index < len(self.sessions) else None
            next_answer = self.answers[0][0] if self.answers else None
            moments = [t for t in (next_session, next_due, next_answer) if t is not None]
            if not moments or min(moments) > self.until:
                break
            clock = max(clock, min(moments))
            if self.progress is not None:
                self.progress(clock)
            if index < len(self.sessions) and self.sessions[index][0] <= clock:
                while index < len(self.sessions) and self.sessions[index][0] <= clock:
                    _, patient, session = self.sessions[index]
                    self._ingest(patient, session)
                    index += 1
                while plan_pending_sessions(db, now=clock, limit=PLAN_LIMIT) == PLAN_LIMIT:
                    pass
                stale = True
            if next_due is not None and next_due <= clock:
                self._dispatch(clock)
                stale = True
            while self.answers and self.answers[0][0] <= clock:
                at, contact_id, plan = heapq.heappop(self.answers)
                self._answer(contact_id, plan, at)
        self._dispatch(self.until)  # close the windows that have closed by now
        result.answers_after_until = len(self.answers)
        if self.progress is not None:
            self.progress(self.until)
        result.messages_queued = self._pending_messages() - queued_before
        result.alerts_queued = self._pending_alerts() - alerts_before
        return result

    def _next_due(self) -> datetime | None:
        return self.db.exec(select(func.min(Contact.due_at)).where(Contact.status == ContactStatus.PLANNED.value)).one()

    # ---- 1. sessions --------------------------------------------------------------------------------------

    def _ingest(self, patient: SyntheticPatient, session: SyntheticSession) -> None:
        try:
            body = ingest.validate(session_event(patient, session, self.clinic_id))
        except ingest.InvalidSession:
            self.result.sessions_rejected += 1
            return
        recorded = ingest.record(self.db, body, actor=ACTOR)
        if recorded.created:
            self.result.sessions_recorded += 1
        else:
            self.result.sessions_already += 1

    # ---- 2. dispatch --------------------------------------------------------------------------------------

    def _dispatch(self, clock: datetime) -> None:
        """One dispatch pass as of ``clock`` (in batches), then schedule the answers to what it opened."""
        while True:
            outcome: DispatchResult = dispatch_due(self.db, now=clock, settings=self.settings, limit=DISPATCH_LIMIT)
            self.result.contacts_opened += outcome.opened
            self.result.contacts_deferred += outcome.deferred
            self.result.contacts_skipped += outcome.skipped
            if outcome.seen < DISPATCH_LIMIT or outcome.unchanged == outcome.seen:
                break
        # The clock only moves forward, so what this pass opened is what was sent at or after ``clock``.
        self._schedule(select_opened(self.clinic_id).where(col(Contact.sent_at) >= clock))

    def _catch_up(self) -> None:
        """Check-ins an earlier run opened and left open: their patients answer when the cohort says."""
        self._schedule(select_opened(self.clinic_id).where(col(Contact.window_closes_at) > self.result.start))

    def _schedule(self, query: Any) -> None:
        """Queue the planned answer of each opened contact, at its send time plus the patient's delay."""
        rows = self.db.execute(query).all()
        for contact_id, _patient_id, step_id, sent_at, closes_at, patient_ext, session_ext in rows:
            if contact_id in self.scheduled:
                continue
            self.scheduled.add(contact_id)
            plan = self.plans.get((patient_ext, session_ext, step_id))
            if plan is None or plan.delay_hours is None or sent_at is None:
                continue
            at = sent_at + timedelta(hours=plan.delay_hours)
            if at >= closes_at:
                self.result.answers_late += 1
                continue
            heapq.heappush(self.answers, (at, contact_id, plan))

    # ---- 3. answers ---------------------------------------------------------------------------------------

    def _answer(self, contact_id: int, plan: PlannedAnswer, at: datetime) -> None:
        answered = answer_check(self.db, contact_id, plan, at=at, secret=self.settings.secret_key.get_secret_value())
        if answered == "missing":  # pragma: no cover - contacts are never deleted
            return
        if answered == "closed":
            self.result.answers_closed += 1
            return
        if answered == "refused":
            self.result.answers_refused += 1
            return
        self.result.answers_recorded += 1
        self.result.red_flags += plan.red_flag
        if answered.response.advice_tier is not None:
            self.result.advice[answered.response.advice_tier] += 1
        if answered.outcome.case_id is not None:
            self.result.cases_opened += 1

    def _pending_messages(self) -> int:
        return self.db.exec(
            select(func.count())
            .select_from(Notification)
            .join(Patient, col(Patient.id) == Notification.patient_id)
            .where(Patient.clinic_id == self.clinic_id, Notification.status == NotificationStatus.PENDING.value)
        ).one()

    def _pending_alerts(self) -> int:
        return self.db.exec(
            select(func.count())
            .select_from(Alert)
            .where(Alert.clinic_id == self.clinic_id, Alert.status == AlertStatus.PENDING.value)
        ).one()


def select_opened(clinic_id: str) -> Any:
    """Opened (sent) contacts of the clinic's patients, with the external ids that find their plan."""
    return (
        sa_select(
            col(Contact.id),
            col(Contact.patient_id),
            col(Contact.step_id),
            col(Contact.sent_at),
            col(Contact.window_closes_at),
            col(Patient.external_id),
            col(TreatmentSession.external_session_id),
        )
        .join(Patient, col(Patient.id) == Contact.patient_id)
        .outerjoin(TreatmentSession, col(TreatmentSession.id) == Contact.session_id)
        .where(col(Patient.clinic_id) == clinic_id, col(Contact.status) == ContactStatus.SENT.value)
        .order_by(col(Contact.id))
    )
