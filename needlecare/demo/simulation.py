"""The demo clinic: a synthetic cohort (``needlecare.demo.cohort``) run through the real pipeline on a simulated clock,
in a private database, and its finished history copied into the application database.

Why a private database: the pipeline's passes serve every clinic of their database, and a run in the
application database would race the live stack (``make run``): its dispatcher, as of the real time, skipped or
sent the demo's check-ins mid-run, and the demo's passes, as of simulated times, would act on the live clinic's
rows. So the simulation runs on a scratch SQLite database that holds only the demo clinic, and what it wrote is
copied once it is history (``needlecare.demo.transfer``): rows in final states only, so no live pass finds
anything of the demo's to send, skip or expire. The demo writes into a clinic of its own
(default ``demo-clinic``, created with the development-only login ``lead@demo-clinic.example``), never into
a clinic it did not create (``make run``'s ``riverside-physio`` included).

``run_demo`` moves a clock from the cohort's first session to ``until`` (default: now), stopping at every moment
something happens, in this order at each moment:

1. every session completed by then is sent as a session-completed body through ``ingest.validate`` and
   ``ingest.record`` (the same checks and idempotent storage as the HTTP API; no Prefect event is emitted),
   then ``planning.plan_pending_sessions`` plans its contacts and aftercare notice;
2. when a contact falls due, ``dispatch.dispatch_due`` runs as of that moment, so check-ins open exactly as in
   production: quiet hours, superseding by a newer session, one survey per patient per day, closed windows;
   after a pass closed windows, ``escalation.sweep`` runs too, at most once per simulated hour (missed safety
   checks, R13; SLA re-alerts, which do not happen: the demo resolves each case within its SLA);
3. when a patient's planned answer time comes (``delay_hours`` after the check-in went out), the answer goes the
   way the JSON answers API takes it (``needlecare.demo.answering``): a signed link read with
   ``tokens.read_token``, ``surveys.load_contact``, ``surveys.survey_context``, ``answers.validate_answers`` and
   ``surveys.record_answer`` (channel ``api``, in ``store_answer``), as of that moment; ``record_answer``
   evaluates the escalation rules and opens a case, with its practitioner alert queued, when a rule calls for
   one. An answer that would arrive after the window closes is not sent. Events the pipeline emits
   (``needlecare.survey.answered``) are dropped during the run;
4. the clinic's staff login resolves each case (``escalation.resolve``) within its SLA (30-80 % of it, drawn
   from the seed), or at ``until`` if that comes first.

Messages. Dispatch writes its outbox rows (each by the channel the step and the patient's consent give) and the
rules their ``Alert`` rows as in production; the demo delivers none. A check-in's messages due while it was open
(before its answer) are copied as ``sent`` at their due time, so the history shows each check-in's channels
(``needlecare.demo.transfer.finalize``); the rest as ``skipped`` (``demo history: not sent``); the summary counts
both. Without an SMS route the simulation uses :data:`SIMULATED_SMS_ROUTE` (nothing goes through it). Check-ins
still planned, or open at ``until``, are left out of the copy (the history ends there), with their messages.

Patients are independent, so ``workers`` > 1 simulates shards of them in worker processes, one scratch
database each, and copies them one after the other. A clinic holds one demo history: a second run writes
nothing (``DemoRefused``). Development databases only (it refuses ``NEEDLECARE_ENV=production``).

``bulk_load`` (``needlecare.demo.bulk``) writes the same shapes of rows for benchmarks, bypassing the pipeline.
"""

import heapq
import random
import tempfile
import time as timer
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from models import (
    AuditEvent,
    CaseStatus,
    Contact,
    ContactStatus,
    EscalationCase,
    Patient,
    StaffUser,
)
from models.base import utcnow
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.demo import parallel, transfer
from needlecare.demo.answering import answer_check, select_opened
from needlecare.demo.clinic import (
    ACTOR,
    DEMO_HISTORY_CLINIC_ID,
    DemoRefused,
    ensure_staff,
    own_clinic,
    session_event,
)
from needlecare.demo.cohort import Cohort, SyntheticPatient, SyntheticSession
from needlecare.demo.trajectories import PlannedAnswer
from needlecare.followup.dispatch import DispatchResult, dispatch_due
from needlecare.followup.planning import plan_pending_sessions
from needlecare.intake import ingest
from needlecare.safety import escalation

SEEDED = "demo.seeded"
SIMULATED_SMS_ROUTE = "json://sms.invalid/demo-not-sent"
"""The SMS route of the simulation when the settings have none (``.invalid`` never resolves; the demo sends nothing)."""
DISPATCH_LIMIT = 500
PLAN_LIMIT = 200
SWEEP_EVERY = timedelta(hours=1)
RESOLVED_NOTE = "Synthetic demo case (needlecare demo): resolved by the demo, no patient exists."

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
    sessions_rejected: int = 0  # refused by ingest validation (e.g. more than a year ago)
    sessions_to_come: int = 0  # completed after ``until``
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
    cases_opened: int = 0  # escalation cases the rules opened on answers
    missed_evaluated: int = 0  # missed safety checks the sweep evaluated (R13)
    cases_resolved: int = 0
    messages_not_sent: int = 0  # patient messages copied as skipped ("demo history: not sent")
    messages_in_history: int = 0  # check-in messages copied as sent: due while their check was open
    alerts_not_sent: int = 0  # practitioner alerts copied, all skipped
    checks_left_out: int = 0  # check-ins still planned or open at ``until``: not copied
    rows_copied: int = 0
    copy_seconds: float = 0.0  # the copy's one transaction (on SQLite, other writers wait this long at most)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "clinic": self.clinic_id,
            "simulated_from": self.start.isoformat(),
            "simulated_until": self.until.isoformat(),
            "patients": self.patients,
            "sessions_recorded": self.sessions_recorded,
            "sessions_rejected": self.sessions_rejected,
            "sessions_still_to_come": self.sessions_to_come,
            "check_ins_opened": self.contacts_opened,
            "check_ins_skipped": self.contacts_skipped,
            "check_ins_left_out": self.checks_left_out,
            "answers_recorded": self.answers_recorded,
            "answers_too_late": self.answers_late,
            "answers_refused": self.answers_refused + self.answers_closed,
            "red_flags": self.red_flags,
            "rule_tiers": dict(sorted(self.advice.items())),
            "cases_opened": self.cases_opened,
            "missed_checks_evaluated": self.missed_evaluated,
            "cases_resolved": self.cases_resolved,
            "messages_not_sent": self.messages_not_sent,
            "messages_in_history": self.messages_in_history,
            "alerts_not_sent": self.alerts_not_sent,
            "rows_copied": self.rows_copied,
            "copy_seconds": round(self.copy_seconds, 1),
            "seconds": round(self.seconds, 1),
        }


def _discard(_event: events.AppEvent) -> None:
    return None


def previous_run(db: Session, clinic_id: str) -> dict[str, Any] | None:
    """The parameters (seed, patients, start, until) of the demo history written into this clinic, if any."""
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
    clinic_id: str = DEMO_HISTORY_CLINIC_ID,
    until: datetime | None = None,
    progress: Progress | None = None,
    copy_progress: transfer.Progress | None = None,
    workers: int = 1,
) -> DemoResult:
    """Simulate ``cohort`` up to ``until`` (default now) in private databases and copy the finished history into
    ``db``'s clinic ``clinic_id`` (created if missing); see the module doc. ``workers`` > 1 simulates that many
    shards of the patients in worker processes (``needlecare.demo.parallel``)."""
    if settings.env == "production":
        raise DemoRefused("the demo writes synthetic patients; it does not run with NEEDLECARE_ENV=production")
    began = timer.perf_counter()
    until = until or utcnow()
    own_clinic(db, clinic_id, settings)
    earlier = previous_run(db, clinic_id)
    if earlier is not None or db.exec(select(Patient.id).where(Patient.clinic_id == clinic_id)).first():
        raise DemoRefused(
            f"clinic '{clinic_id}' already holds a demo history"
            + (f" (seed {earlier.get('seed')}, {earlier.get('patients')} patients)" if earlier else "")
            + "; nothing written. Choose another --clinic, or a fresh database"
        )
    staff = ensure_staff(db, clinic_id)
    assert staff.id is not None
    job = _Job(transfer.clinic_fields(db, clinic_id), staff.email, staff.name, settings, clinic_id, until)
    workers = max(1, min(workers, len(cohort)))
    shards = [Cohort(cohort.seed, cohort.start, cohort.span_days, cohort.patients[k::workers]) for k in range(workers)]
    with tempfile.TemporaryDirectory(prefix="needlecare-demo-") as scratch_dir:
        folders = [Path(scratch_dir) / f"shard-{k}" for k in range(workers)]
        for folder in folders:
            folder.mkdir()
        if workers == 1:
            done = [_simulate(job, shards[0], folders[0], progress)]
        else:
            done = parallel.run_workers(_worker, [(job, s, f) for s, f in zip(shards, folders, strict=True)], progress)
        result = _merged(clinic_id, until, [r for r, _ in done])
        copying = timer.perf_counter()
        for folder, (_, user_id) in zip(folders, done, strict=True):
            with transfer.opened(folder / "demo.db") as private:
                counts = transfer.copy_history(
                    private, db, clinic_id=clinic_id, staff=(user_id, staff.id), last=None, progress=copy_progress
                )
            result.rows_copied += counts.rows
            result.checks_left_out += counts.dropped.get("contact", 0)
            result.messages_not_sent += counts.copied.get("notification", 0)
            result.alerts_not_sent += counts.copied.get("alert", 0)
        result.messages_not_sent -= result.messages_in_history
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
                "answers": result.answers_recorded,
            },
        )
    )
    db.commit()
    result.copy_seconds = timer.perf_counter() - copying
    result.seconds = timer.perf_counter() - began
    return result


@dataclass(frozen=True)
class _Job:
    """What a simulation needs besides its patients (picklable, for worker processes)."""

    clinic: dict[str, Any]
    staff_email: str
    staff_name: str
    settings: Settings
    clinic_id: str
    until: datetime


def _simulate(job: _Job, cohort: Cohort, folder: Path, progress: Progress | None) -> tuple[DemoResult, int]:
    """Simulate ``cohort`` in a scratch database in ``folder`` and make it final; the counts, and the id of the
    scratch database's staff user (the demo login's stand-in)."""
    with transfer.scratch(folder) as private:
        user = transfer.mirror_clinic(private, job.clinic, job.staff_email, job.staff_name)
        previous = events.set_emitter(_discard)
        try:
            settings = job.settings
            if settings.resolved_patient_sms_url is None:
                settings = settings.model_copy(update={"patient_sms_url": SIMULATED_SMS_ROUTE})
            result = _Simulation(private, cohort, settings, job.clinic_id, job.until, progress, user).run()
        finally:
            events.set_emitter(previous)
        result.messages_in_history = transfer.finalize(private, until=job.until)
        assert user.id is not None
        return result, user.id


def _worker(job: _Job, cohort: Cohort, folder: Path, channel: Any, index: int) -> None:
    """A worker process: :func:`_simulate`, reporting its clock about once a simulated hour, then its counts."""
    reported: list[datetime] = []

    def report(clock: datetime) -> None:
        if not reported or clock - reported[0] >= timedelta(hours=1):
            reported[:] = [clock]
            channel.put(("at", index, clock))

    try:
        channel.put(("done", index, _simulate(job, cohort, folder, report)))
    except Exception as exc:  # reported to the parent, which raises WorkerFailed
        channel.put(("error", index, f"{type(exc).__name__}: {exc}"))


def _merged(clinic_id: str, until: datetime, parts: list[DemoResult]) -> DemoResult:
    """The counts of the shards added up."""
    merged = DemoResult(clinic_id=clinic_id, start=min(p.start for p in parts), until=until)
    for part in parts:
        for item in fields(DemoResult):
            value = getattr(part, item.name)
            if isinstance(value, Counter):
                merged.advice.update(value)
            elif isinstance(value, int | float) and item.name not in ("seconds", "copy_seconds"):
                setattr(merged, item.name, getattr(merged, item.name) + value)
    return merged


class _Simulation:
    def __init__(
        self,
        db: Session,
        cohort: Cohort,
        settings: Settings,
        clinic_id: str,
        until: datetime,
        progress: Progress | None,
        staff: StaffUser,
    ) -> None:
        self.db, self.cohort, self.settings, self.clinic_id, self.until = db, cohort, settings, clinic_id, until
        self.progress, self.staff = progress, staff
        first = min((p.episode_start for p in cohort), default=until)
        self.result = DemoResult(clinic_id=clinic_id, start=min(first, until), until=until, patients=len(cohort))
        self.plans: dict[PlanKey, PlannedAnswer] = {}
        self.reply_draws = {patient.external_id: patient.sms_reply_draw for patient in cohort}
        self.reply_draw_of: dict[int, float] = {}  # contact id -> its patient's draw (needlecare.demo.answering)
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
        self.resolves: list[tuple[datetime, int]] = []  # heap of (resolve time, case id)
        self.scheduled: set[int] = set()
        self.last_case = 0
        self.new_cases = False  # a case may have opened since the last look
        self.swept: datetime | None = None
        self.expired = 0  # contacts closed since the last sweep: only they can be missed safety checks

    def run(self) -> DemoResult:
        db = self.db
        index, clock = 0, self.result.start
        next_due, stale = None, True  # the earliest planned contact; re-read after planning or dispatching
        while True:
            if stale:
                next_due, stale = self._next_due(), False
            next_session = self.sessions[index][0] if index < len(self.sessions) else None
            next_answer = self.answers[0][0] if self.answers else None
            next_resolve = self.resolves[0][0] if self.resolves else None
            moments = [t for t in (next_session, next_due, next_answer, next_resolve) if t is not None]
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
            if self.expired and (self.swept is None or clock - self.swept >= SWEEP_EVERY):
                self._sweep(clock)
            if self.new_cases:
                self._schedule_cases()
            while self.resolves and self.resolves[0][0] <= clock:
                at, case_id = heapq.heappop(self.resolves)
                self._resolve(case_id, at)
        self._dispatch(self.until)  # close the windows that have closed by now
        self._sweep(self.until)
        self._schedule_cases()
        while self.resolves:  # what the staff would resolve after ``until`` is resolved at ``until``
            at, case_id = heapq.heappop(self.resolves)
            self._resolve(case_id, min(at, self.until))
        self.result.answers_after_until = len(self.answers)
        if self.progress is not None:
            self.progress(self.until)
        return self.result

    def _next_due(self) -> datetime | None:
        return self.db.exec(select(func.min(Contact.due_at)).where(Contact.status == ContactStatus.PLANNED.value)).one()

    # ---- 1. sessions --------------------------------------------------------------------------------------

    def _ingest(self, patient: SyntheticPatient, session: SyntheticSession) -> None:
        try:
            body = ingest.validate(session_event(patient, session, self.clinic_id))
        except ingest.InvalidSession:
            self.result.sessions_rejected += 1
            return
        if ingest.record(self.db, body, actor=ACTOR).created:
            self.result.sessions_recorded += 1

    # ---- 2. dispatch and the sweep ------------------------------------------------------------------------

    def _dispatch(self, clock: datetime) -> None:
        """One dispatch pass as of ``clock`` (in batches), then schedule the answers to what it opened."""
        while True:
            outcome: DispatchResult = dispatch_due(self.db, now=clock, settings=self.settings, limit=DISPATCH_LIMIT)
            self.result.contacts_opened += outcome.opened
            self.result.contacts_deferred += outcome.deferred
            self.result.contacts_skipped += outcome.skipped
            self.expired += outcome.expired
            if outcome.seen < DISPATCH_LIMIT or outcome.unchanged == outcome.seen:
                break
        # The clock only moves forward, so what this pass opened is what was sent at or after ``clock``.
        self._schedule(select_opened(self.clinic_id).where(col(Contact.sent_at) >= clock))

    def _sweep(self, clock: datetime) -> None:
        """The escalation sweep as of ``clock``, until it finds nothing more (missed safety checks, re-alerts)."""
        self.swept, self.expired = clock, 0
        while True:
            swept = escalation.sweep(self.db, now=clock)
            self.result.missed_evaluated += swept.missed_evaluated
            self.new_cases = self.new_cases or swept.missed_cases > 0
            if swept.missed_evaluated + swept.realerted == 0:
                return

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
            self.reply_draw_of[contact_id] = self.reply_draws.get(patient_ext, 1.0)
            heapq.heappush(self.answers, (at, contact_id, plan))

    # ---- 3. answers ---------------------------------------------------------------------------------------

    def _answer(self, contact_id: int, plan: PlannedAnswer, at: datetime) -> None:
        secret, draw = self.settings.secret_key.get_secret_value(), self.reply_draw_of.get(contact_id, 1.0)
        answered = answer_check(self.db, contact_id, plan, at=at, secret=secret, reply_draw=draw)
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
            self.new_cases = True

    # ---- 4. cases -----------------------------------------------------------------------------------------

    def _schedule_cases(self) -> None:
        """Each newly opened case is resolved within its SLA, at a share of it drawn from the seed."""
        rows = self.db.exec(
            select(EscalationCase.id, EscalationCase.opened_at, EscalationCase.due_at, Patient.external_id)
            .join(Patient, col(Patient.id) == EscalationCase.patient_id)
            .where(col(EscalationCase.id) > self.last_case)
            .order_by(col(EscalationCase.id))
        ).all()
        self.new_cases = False
        for case_id, opened_at, due_at, patient in rows:  # drawn from what the case is, not its id (workers)
            assert case_id is not None
            self.last_case = case_id
            share = random.Random(f"needlecare-demo:{self.cohort.seed}:{patient}:{opened_at}").uniform(0.3, 0.8)
            heapq.heappush(self.resolves, (opened_at + (due_at - opened_at) * share, case_id))

    def _resolve(self, case_id: int, at: datetime) -> None:
        case = self.db.get(EscalationCase, case_id)
        if case is None or case.status == CaseStatus.RESOLVED.value:  # pragma: no cover - nothing else resolves
            return
        escalation.resolve(self.db, case_id, self.staff, RESOLVED_NOTE, now=at)
        self.result.cases_resolved += 1
