"""The demo clinic: a synthetic cohort (``needlecare.demo.cohort``) run through the real pipeline on a simulated clock.

``run_demo`` moves a clock from the cohort's first session to ``until`` (default: now), stopping at every moment
something happens, in this order at each moment:

1. every session completed by then is sent as a session-completed body through ``ingest.validate`` and
   ``ingest.record`` (the same checks and idempotent storage as the HTTP API; no Prefect event is emitted),
   then ``planning.plan_pending_sessions`` plans its contacts and aftercare notice;
2. when a contact falls due, ``dispatch.dispatch_due`` runs as of that moment, so check-ins open exactly as in
   production: quiet hours, superseding by a newer session, one survey per patient per day, closed windows;
3. when a patient's planned answer time comes (``delay_hours`` after the check-in went out), the answer goes the
   way the JSON answers API takes it: a signed link read with ``tokens.read_token``, ``surveys.load_contact``,
   ``surveys.survey_context``, ``answers.validate_answers`` and ``surveys.record_answer`` (channel ``api``, in
   ``store_answer``), as of that moment; ``record_answer`` evaluates the escalation rules and opens a case, with
   its practitioner alert queued, when a rule calls for one. An answer that would arrive after the window closes
   is not sent. Events the pipeline emits (``needlecare.survey.answered``) are dropped during the run.

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

``bulk_load`` is for benchmarks only: it writes the same shapes of rows with batched INSERTs, bypassing ingest,
planning and dispatch (no quiet hours, superseding or outbox rows), so 100k patients load in minutes.
"""

import heapq
import time as timer
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import func, insert, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from models import (
    Alert,
    AlertStatus,
    AuditEvent,
    Clinic,
    ClinicCreate,
    Contact,
    ContactStatus,
    Episode,
    Notification,
    NotificationStatus,
    Patient,
    Practitioner,
    SurveyResponse,
    TreatmentSession,
)
from models.base import utcnow
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.core.tokens import TokenError, make_token, read_token
from needlecare.demo.cohort import (
    CLINIC_TZ,
    Cohort,
    PlannedAnswer,
    SyntheticPatient,
    SyntheticSession,
    practitioner_email,
    practitioner_external_id,
    practitioner_name,
)
from needlecare.followup.dispatch import DispatchResult, dispatch_due
from needlecare.followup.planning import contact_key, plan_pending_sessions
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import InvalidAnswers, SurveyAnswers, validate_answers
from needlecare.intake import ingest
from needlecare.intake.clinics import add_clinic
from needlecare.intake.sample import DEMO_CLINIC_ID
from needlecare.safety.rules import EvaluationInput, RuleSet, evaluate, get_rules
from needlecare.surveys.responses import (
    Answered,
    SurveyContext,
    SurveyUnavailable,
    load_contact,
    record_answer,
    survey_context,
)

ACTOR = "demo"
SEEDED = "demo.seeded"
DISPATCH_LIMIT = 500
PLAN_LIMIT = 200

Progress = Callable[[datetime], None]
PlanKey = tuple[str, str | None, str]  # patient external id, session external id (None: episode), step id


class DemoRefused(RuntimeError):
    """The demo will not run here (a production database)."""


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


def session_event(patient: SyntheticPatient, session: SyntheticSession, clinic_id: str) -> dict[str, Any]:
    """The session-completed body a clinic's system would send for this synthetic session (README contract)."""
    return {
        "clinic_id": clinic_id,
        "external_session_id": session.external_id,
        "completed_at": session.completed_at.isoformat().replace("+00:00", "Z"),
        "practitioner": {
            "external_id": practitioner_external_id(patient.practitioner),
            "name": practitioner_name(patient.practitioner),
            "email": practitioner_email(patient.practitioner),
        },
        "patient": {
            "external_id": patient.external_id,
            "first_name": patient.first_name,
            "last_name": patient.last_name,
            "email": patient.email,
            "timezone": patient.timezone,
            "consent": {"email": patient.consent_email, "sms": False},
        },
        "injury": patient.injury,
        "side": patient.side,
        "regions_needled": list(session.regions),
        "muscles_needled": list(session.muscles),
        "baseline": {
            "pain_nprs": session.pain_nprs,
            "rom": {"measure": patient.rom_measure, "value": session.rom_value},
        },
    }


def ensure_clinic(db: Session, clinic_id: str, settings: Settings) -> bool:
    """Create the clinic if it is missing (the demo clinic exactly as ``make run`` creates it); True if created."""
    if db.get(Clinic, clinic_id) is not None:
        return False
    if clinic_id == DEMO_CLINIC_ID:
        from needlecare.intake.sample import ensure_demo_clinic

        url = db.get_bind().engine.url.render_as_string(hide_password=False)
        ensure_demo_clinic(settings.model_copy(update={"database_url": url}))
        return True
    add_clinic(
        db,
        ClinicCreate(
            id=clinic_id, name=f"Demo clinic {clinic_id}", email="front-desk@example.invalid", timezone=CLINIC_TZ
        ),
        actor=ACTOR,
    )
    return True


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
        db, secret = self.db, self.settings.secret_key.get_secret_value()
        contact = db.get(Contact, contact_id)
        if contact is None:  # pragma: no cover - contacts are never deleted
            return
        token = make_token(contact_id, contact.patient_id, contact.step_id, contact.window_closes_at, secret)
        try:
            claims = read_token(token, secret, at)
            context = survey_context(db, load_contact(db, claims, now=at))
        except (TokenError, SurveyUnavailable):
            self.result.answers_closed += 1
            return
        try:
            answers = validate_answers(
                dict(plan.answers),
                protocol=context.protocol,
                step=context.step,
                regions_needled=context.regions_needled,
                previous_activities=context.previous_activities or None,
            )
        except InvalidAnswers:
            self.result.answers_refused += 1
            return
        try:
            answered = store_answer(db, context, answers, now=at)
        except SurveyUnavailable:
            self.result.answers_closed += 1
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


def store_answer(db: Session, context: SurveyContext, answers: SurveyAnswers, *, now: datetime) -> Answered:
    """The one place the demo stores an answer: the JSON answers API's call (channel "api"), which also
    evaluates the escalation rules and opens a case (with its practitioner alert queued) when one is needed."""
    return record_answer(db, context.contact, answers, channel="api", now=now)


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


def _pk(value: int | None) -> int:
    if value is None:  # pragma: no cover - stored rows have ids
        raise RuntimeError("row has no id")
    return value


# ---- bulk loading, for benchmarks only ---------------------------------------------------------------------


@dataclass
class BulkResult:
    """Rows written by ``bulk_load``."""

    patients: int = 0
    practitioners: int = 0
    episodes: int = 0
    sessions: int = 0
    contacts: int = 0
    responses: int = 0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.patients + self.practitioners + self.episodes + self.sessions + self.contacts + self.responses

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def bulk_load(
    db: Session,
    cohort: Cohort | Iterable[SyntheticPatient],
    *,
    settings: Settings,
    clinic_id: str = DEMO_CLINIC_ID,
    now: datetime | None = None,
    batch: int = 2000,
    advice_tiers: bool = True,
) -> BulkResult:
    """FOR BENCHMARKS ONLY: write the cohort's rows up to ``now`` with batched INSERTs, into an empty clinic.

    The same shapes of rows as the pipeline writes (patients, practitioners, episodes, sessions, contacts, survey
    responses), without going through ingest, planning, dispatch or the survey API: no outbox rows and no audit
    rows per row; a check goes out exactly when due (no quiet hours, no one-survey-per-day); the pipeline's
    superseding rule (a newer session before a safety or 7-day check falls due) is applied. Contacts due after
    ``now`` stay planned; an answer counts when it arrives inside the window and by ``now``. With
    ``advice_tiers`` (default) each answer's ``advice_tier`` comes from the real rule set (about 0.15 ms an answer,
    without the previous-check inputs); otherwise it is left empty, and no escalation cases are written either way.
    Patients stream through in batches of ``batch``, so memory stays flat when ``cohort`` is
    ``cohort.iter_patients(...)``. Refuses a clinic that already holds any of these patients. Ids are reserved
    up front (see ``_insert_returning``): do not run it beside other writers on SQLite.
    """
    began = timer.perf_counter()
    if settings.env == "production":
        raise DemoRefused("bulk_load writes synthetic patients; it does not run with NEEDLECARE_ENV=production")
    now = now or utcnow()
    ensure_clinic(db, clinic_id, settings)
    result = BulkResult()
    practitioners = _bulk_practitioners(db, clinic_id, result)
    patients = iter(cohort)
    while True:
        chunk = list(islice(patients, batch))
        if not chunk:
            break
        _bulk_chunk(
            db,
            chunk,
            clinic_id=clinic_id,
            now=now,
            practitioners=practitioners,
            result=result,
            rules=get_rules() if advice_tiers else None,
        )
        db.commit()
    db.add(
        AuditEvent(
            actor=ACTOR,
            action="demo.bulk_loaded",
            entity="clinic",
            entity_id=clinic_id,
            detail={"patients": result.patients, "responses": result.responses, "now": now.isoformat()},
        )
    )
    db.commit()
    result.seconds = timer.perf_counter() - began
    return result


def _bulk_practitioners(db: Session, clinic_id: str, result: BulkResult) -> dict[int, int]:
    from needlecare.demo.cohort import PRACTITIONERS

    wanted = {practitioner_external_id(n): n for n in range(1, PRACTITIONERS + 1)}
    existing = dict(
        db.exec(
            select(Practitioner.external_id, Practitioner.id).where(
                Practitioner.clinic_id == clinic_id, col(Practitioner.external_id).in_(wanted)
            )
        ).all()
    )
    missing = [
        {
            "clinic_id": clinic_id,
            "external_id": ext,
            "name": practitioner_name(n),
            "email": practitioner_email(n),
            "created_at": utcnow(),
        }
        for ext, n in wanted.items()
        if ext not in existing
    ]
    if missing:
        ids = _insert_returning(db, Practitioner, missing)
        existing.update({str(row["external_id"]): pid for row, pid in zip(missing, ids, strict=True)})
        result.practitioners += len(missing)
    return {n: _pk(existing[ext]) for ext, n in wanted.items()}


def _insert_returning(db: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Plain executemany INSERTs with ids reserved first, returned in the order of ``rows``.

    Faster than INSERT … RETURNING, which SQLite runs row by row when the order of the ids must be kept.
    PostgreSQL: the ids come from the table's own sequence (nextval), so later inserts go on from there.
    SQLite: the ids follow the largest one in the table (SQLite does the same); one writer at a time.
    """
    if not rows:
        return []
    table = model.__table__
    connection = db.connection()
    if connection.dialect.name == "postgresql":
        ids = list(
            connection.execute(
                text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, :n)"),
                {"n": len(rows)},
            ).scalars()
        )
    else:
        first = int(connection.execute(text(f"SELECT coalesce(max(id), 0) + 1 FROM {table.name}")).scalar_one())
        ids = list(range(first, first + len(rows)))
    for row, row_id in zip(rows, ids, strict=True):
        row["id"] = row_id
    connection.execute(insert(table), rows)
    return [int(row_id) for row_id in ids]


def _bulk_chunk(
    db: Session,
    chunk: list[SyntheticPatient],
    *,
    clinic_id: str,
    now: datetime,
    practitioners: dict[int, int],
    result: BulkResult,
    rules: RuleSet | None,
) -> None:
    externals = [p.external_id for p in chunk]
    clash = db.exec(
        select(func.count())
        .select_from(Patient)
        .where(Patient.clinic_id == clinic_id, col(Patient.external_id).in_(externals))
    ).one()
    if clash:
        raise ValueError(
            f"clinic '{clinic_id}' already holds {clash} of these synthetic patients; bulk_load needs an empty clinic "
            "(use another --clinic or a fresh database)"
        )
    chunk = [p for p in chunk if p.episode_start <= now]
    if not chunk:
        return
    patient_ids = _insert_returning(
        db,
        Patient,
        [
            {
                "clinic_id": clinic_id,
                "external_id": p.external_id,
                "first_name": p.first_name,
                "last_name": p.last_name,
                "email": p.email,
                "phone": None,
                "timezone": p.timezone,
                "consent_email": p.consent_email,
                "consent_sms": False,
                "opted_out_at": None,
                "created_at": p.episode_start,
                "updated_at": p.episode_start,
            }
            for p in chunk
        ],
    )
    episode_ids = _insert_returning(
        db,
        Episode,
        [
            {
                "clinic_id": clinic_id,
                "patient_id": pid,
                "injury": p.injury,
                "started_at": p.episode_start,
                "baseline_pain_nprs": p.sessions[0].pain_nprs,
                "baseline_rom_measure": p.rom_measure,
                "baseline_rom_value": p.sessions[0].rom_value,
                "created_at": p.episode_start,
            }
            for p, pid in zip(chunk, patient_ids, strict=True)
        ],
    )
    session_rows: list[dict[str, Any]] = []
    owners: list[tuple[int, SyntheticSession]] = []
    for i, p in enumerate(chunk):
        for s in p.sessions:
            if s.completed_at > now:
                break
            owners.append((i, s))
            session_rows.append(
                {
                    "clinic_id": clinic_id,
                    "external_session_id": s.external_id,
                    "patient_id": patient_ids[i],
                    "episode_id": episode_ids[i],
                    "practitioner_id": practitioners[p.practitioner],
                    "completed_at": s.completed_at,
                    "injury": p.injury,
                    "side": p.side,
                    "regions_needled": list(s.regions),
                    "muscles_needled": list(s.muscles),
                    "baseline_pain_nprs": s.pain_nprs,
                    "baseline_rom_measure": p.rom_measure,
                    "baseline_rom_value": s.rom_value,
                    "received_at": s.completed_at,
                    "planned_at": s.completed_at,
                }
            )
    session_ids = _insert_returning(db, TreatmentSession, session_rows)
    by_session = {(i, s.number): sid for (i, s), sid in zip(owners, session_ids, strict=True)}

    contact_rows: list[dict[str, Any]] = []
    answered: list[tuple[dict[str, Any], PlannedAnswer, SyntheticSession, int]] = []
    for i, p in enumerate(chunk):
        protocol = get_protocol(p.injury)
        ingested = [s for s in p.sessions if (i, s.number) in by_session]
        for step in protocol.steps:
            owners_for_step: list[tuple[SyntheticSession | None, PlannedAnswer | None, datetime]] = (
                [(s, s.checks.get(step.id), s.completed_at) for s in ingested]
                if step.scope == "session"
                else [(None, p.outcomes.get(step.id), p.episode_start)]
            )
            for session, plan, reference in owners_for_step:
                sid = by_session[(i, session.number)] if session is not None else None
                row = _bulk_contact(p, step, session, ingested, reference, now)
                row.update(
                    idempotency_key=contact_key(step.scope, sid if sid is not None else episode_ids[i], step.id),
                    patient_id=patient_ids[i],
                    session_id=sid,
                    episode_id=episode_ids[i],
                    protocol_version=protocol.version,
                )
                if plan is not None and row["status"] == ContactStatus.SENT.value and plan.delay_hours is not None:
                    at = row["sent_at"] + timedelta(hours=plan.delay_hours)
                    if at < row["window_closes_at"] and at <= now:
                        row.update(status=ContactStatus.ANSWERED.value, answered_at=at)
                        last = session or [s for s in ingested if s.completed_at <= at][-1]
                        answered.append((row, plan, last, p.sessions[0].pain_nprs))
                if row["status"] == ContactStatus.SENT.value and row["window_closes_at"] <= now:
                    row["status"] = ContactStatus.EXPIRED.value
                contact_rows.append(row)
    contact_ids = _insert_returning(db, Contact, contact_rows)
    ids_by_row = {id(row): cid for row, cid in zip(contact_rows, contact_ids, strict=True)}
    response_rows = [
        _bulk_response(row, ids_by_row[id(row)], plan, last, baseline, rules) for row, plan, last, baseline in answered
    ]
    if response_rows:
        db.connection().execute(insert(SurveyResponse.__table__), response_rows)  # type: ignore[attr-defined]
    result.patients += len(chunk)
    result.episodes += len(episode_ids)
    result.sessions += len(session_ids)
    result.contacts += len(contact_ids)
    result.responses += len(response_rows)


def _bulk_contact(
    patient: SyntheticPatient,
    step: Any,
    session: SyntheticSession | None,
    ingested: list[SyntheticSession],
    reference: datetime,
    now: datetime,
) -> dict[str, Any]:
    due = reference + timedelta(hours=step.offset_hours)
    row: dict[str, Any] = {
        "injury": patient.injury,
        "step_id": step.id,
        "scope": step.scope,
        "safety": step.safety,
        "status": ContactStatus.PLANNED.value,
        "due_at": due,
        "window_opens_at": reference + timedelta(hours=step.window_start_hours),
        "window_closes_at": reference + timedelta(hours=step.window_end_hours),
        "sent_at": None,
        "answered_at": None,
        "skip_reason": None,
        "created_at": reference,
    }
    if due > now:
        return row
    if not patient.consent_email:
        row.update(status=ContactStatus.SKIPPED.value, skip_reason="no consent to email")
    elif (
        session is not None
        and (step.safety or step.skip_if_next_session_before_due)
        and any(session.completed_at < other.completed_at <= due for other in ingested)
    ):
        row.update(status=ContactStatus.SKIPPED.value, skip_reason="superseded by a newer session")
    else:
        row.update(status=ContactStatus.SENT.value, sent_at=due)
    return row


def _bulk_response(
    row: dict[str, Any],
    contact_id: int,
    plan: PlannedAnswer,
    session: SyntheticSession,
    baseline_nprs: int,
    rules: RuleSet | None,
) -> dict[str, Any]:
    """The survey_response row; ``advice_tier`` from the real rule set when ``rules`` is given."""
    answers = SurveyAnswers.model_validate(dict(plan.answers))
    tier = None
    if rules is not None:
        inputs = EvaluationInput.from_answers(
            answers,
            hours_since_session=(row["answered_at"] - session.completed_at).total_seconds() / 3600,
            step_id=row["step_id"],
            regions_needled=list(session.regions),
            injury_slug=row["injury"],
            baseline_nprs=baseline_nprs,
        )
        tier = evaluate(rules, inputs).highest_tier
    return {
        "contact_id": contact_id,
        "patient_id": row["patient_id"],
        "session_id": row["session_id"],
        "episode_id": row["episode_id"],
        "injury": row["injury"],
        "step_id": row["step_id"],
        "channel": "api",
        "submitted_at": row["answered_at"],
        "nprs_usual": answers.nprs_usual,
        "nprs_worst": answers.nprs_worst,
        "soreness": answers.soreness,
        "bruise": answers.bruise,
        "groc15": answers.groc15,
        "rom_measure": answers.rom.measure if answers.rom else None,
        "rom_value": answers.rom.value if answers.rom else None,
        "psfs": [item.model_dump() for item in answers.psfs] if answers.psfs is not None else None,
        "redflags": list(answers.redflags),
        "free_text": answers.free_text,
        "fainted": answers.fainted,
        "ran": answers.ran,
        "run_pain": answers.run_pain,
        "advice_tier": tier,
    }
