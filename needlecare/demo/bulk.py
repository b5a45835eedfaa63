"""Bulk loading, for benchmarks only: ``bulk_load`` writes the same shapes of rows as the demo run
(``needlecare.demo.simulation``) with batched INSERTs, bypassing ingest, planning and dispatch (no quiet hours or
superseding at send time), so 100k patients load in minutes. The check-in messages that went out by ``now`` are
written as sent outbox rows, by the channel the protocol step and the patient's consent give (the rule of
``needlecare.followup.channels``: the first of ``Step.channels`` / ``Step.reminder_channels`` the patient allows,
an SMS route assumed), and some answers to a check a text reply can answer come back by SMS reply."""

import time as timer
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import func, insert, text
from sqlmodel import Session, col, select

from models import (
    AuditEvent,
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
from needlecare.core.settings import Settings
from needlecare.demo.clinic import ACTOR, DemoRefused, ensure_clinic
from needlecare.demo.cohort import (
    Cohort,
    SyntheticPatient,
    SyntheticSession,
    practitioner_email,
    practitioner_external_id,
    practitioner_name,
)
from needlecare.demo.figures import PRACTITIONERS, SMS_REPLY_SHARE
from needlecare.demo.trajectories import PlannedAnswer
from needlecare.followup.dispatch import REMINDER, SURVEY, message_key
from needlecare.followup.planning import contact_key
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import SurveyAnswers
from needlecare.intake.sample import DEMO_CLINIC_ID
from needlecare.safety.rules.evaluation import EvaluationInput, evaluate
from needlecare.safety.rules.ruleset import RuleSet, get_rules


@dataclass
class BulkResult:
    """Rows written by ``bulk_load``."""

    patients: int = 0
    practitioners: int = 0
    episodes: int = 0
    sessions: int = 0
    contacts: int = 0
    responses: int = 0
    messages: int = 0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return (
            self.patients
            + self.practitioners
            + self.episodes
            + self.sessions
            + self.contacts
            + self.responses
            + self.messages
        )

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
                "phone": p.phone,
                "timezone": p.timezone,
                "consent_email": p.consent_email,
                "consent_sms": p.consent_sms,
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
    steps: dict[int, tuple[SyntheticPatient, Any]] = {}  # id(contact row) -> its patient and protocol step
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
                steps[id(row)] = (p, step)
    contact_ids = _insert_returning(db, Contact, contact_rows)
    ids_by_row = {id(row): cid for row, cid in zip(contact_rows, contact_ids, strict=True)}
    message_rows: list[dict[str, Any]] = []
    for row in contact_rows:
        if row["sent_at"] is not None:
            message_rows += _bulk_messages(row, ids_by_row[id(row)], *steps[id(row)], now)
    texted: dict[int, datetime] = {}  # contact id -> its first SMS reminder
    for m in message_rows:
        if m["sequence"] > 0 and m["channel"] == SMS:
            texted[m["contact_id"]] = min(m["due_at"], texted.get(m["contact_id"], m["due_at"]))
    response_rows = []
    for row, plan, last, baseline in answered:
        patient, step = steps[id(row)]
        cid = ids_by_row[id(row)]
        by_reply = (
            bool(step.sms_reply_questions)
            and not plan.red_flag
            and patient.sms_reply_draw < SMS_REPLY_SHARE
            and cid in texted
            and texted[cid] <= row["answered_at"]
        )
        response_rows.append(
            _bulk_response(row, cid, plan, last, baseline, rules, reply=step.sms_reply_questions if by_reply else None)
        )
    if message_rows:
        db.connection().execute(insert(Notification.__table__), message_rows)  # type: ignore[attr-defined]
    if response_rows:
        db.connection().execute(insert(SurveyResponse.__table__), response_rows)  # type: ignore[attr-defined]
    result.patients += len(chunk)
    result.episodes += len(episode_ids)
    result.sessions += len(session_ids)
    result.contacts += len(contact_ids)
    result.responses += len(response_rows)
    result.messages += len(message_rows)


EMAIL, SMS = "email", "sms"


def _channel(listed: list[str], patient: SyntheticPatient) -> str | None:
    """The first of ``listed`` the patient allows (``needlecare.followup.channels.choose``, an SMS route assumed)."""
    for channel in listed:
        if channel == EMAIL and patient.consent_email and patient.email:
            return channel
        if channel == SMS and patient.consent_sms and patient.phone:
            return channel
    return None


def _bulk_messages(
    row: dict[str, Any], contact_id: int, patient: SyntheticPatient, step: Any, now: datetime
) -> list[dict[str, Any]]:
    """The sent outbox rows of a check-in that went out: its first message, and each reminder due by ``now``, before
    the window closed and before the answer (a reminder after the answer is not sent)."""
    until = min(now, row["answered_at"] or now)
    times = [(0, row["sent_at"])]
    times += [(i, row["sent_at"] + timedelta(hours=h)) for i, h in enumerate(step.reminder_hours, start=1)]
    messages = []
    for sequence, due in times:
        channel = _channel(step.channels if sequence == 0 else step.reminder_channels, patient)
        if channel is None or due > until or due >= row["window_closes_at"]:
            continue
        messages.append(
            {
                "idempotency_key": message_key(contact_id, sequence),
                "kind": SURVEY if sequence == 0 else REMINDER,
                "channel": channel,
                "session_id": row["session_id"],
                "contact_id": contact_id,
                "sequence": sequence,
                "patient_id": row["patient_id"],
                "status": NotificationStatus.SENT.value,
                "due_at": due,
                "attempts": 1,
                "sent_at": due,
                "created_at": row["sent_at"],
            }
        )
    return messages


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
    if _channel(step.channels, patient) is None:
        reason = "no consent to email" if EMAIL in step.channels else "no channel allowed for this message"
        row.update(status=ContactStatus.SKIPPED.value, skip_reason=reason)
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
    *,
    reply: list[str] | None = None,
) -> dict[str, Any]:
    """The survey_response row; ``advice_tier`` from the real rule set when ``rules`` is given. ``reply``: the
    questions a text reply answers; the answer then came by SMS and holds only those."""
    body = dict(plan.answers) if reply is None else {q: plan.answers[q] for q in reply if q in plan.answers}
    answers = SurveyAnswers.model_validate(body)
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
        "channel": "api" if reply is None else "sms",
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
        **answers.recalls(),
        "advice_tier": tier,
    }


def _pk(value: int | None) -> int:
    if value is None:  # pragma: no cover - stored rows have ids
        raise RuntimeError("row has no id")
    return value
