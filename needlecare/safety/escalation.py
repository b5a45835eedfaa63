"""From a rule evaluation to an open case: record every evaluation, open a case when a tier needs one,
queue the practitioner alert, and close the loop (acknowledge, resolve, re-alert after the SLA, R13).

Everything here runs inside the caller's transaction and commits nothing itself, except
:func:`sweep` which is a pass of its own. The answer, its evaluation, its case and its alert row are
stored together: if one is stored, all are (nothing is lost when an event or a flow run is).

Exactly once: a case has a unique key (``response:<id>`` or ``missed:<contact id>``) and its alerts unique
keys (``case:<id>:primary`` / ``case:<id>:backup``); a second evaluation of the same thing finds the key taken.

An answer row may be evaluated more than once: first its red-flag part (``kind="partial"``, a form refused for
errors elsewhere), then the whole answer. A later evaluation opens no case for rules that a case of the same
answer already has at the same or a higher tier; rules that are new, or fire at a higher tier, open a case of
their own (``response:<id>:<evaluation id>``), so new information is alerted and the same flags only once.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, update
from sqlmodel import Session, col, select

from models import (
    Alert,
    AuditEvent,
    CaseRule,
    CaseStatus,
    Clinic,
    Contact,
    ContactStatus,
    Episode,
    EscalationCase,
    Notification,
    NotificationStatus,
    RuleEvaluation,
    StaffUser,
    SurveyResponse,
    TreatmentSession,
)
from needlecare.core.sql import insert_ignore
from needlecare.followup.questions import SurveyAnswers
from needlecare.safety import sla
from needlecare.safety.clinic_config import ESCALATION_TIERS, config_of
from needlecare.safety.rules.evaluation import Evaluation, EvaluationInput, FiredRule, evaluate
from needlecare.safety.rules.ruleset import RuleSet, get_rules
from needlecare.safety.rules.variables import TIER_RANK

MISSED_AFTER_REMINDER_HOURS = 6.0  # a reminder unanswered this long counts as missed (domain.md §4.3: 6-8 h)


class CaseError(ValueError):
    """An action on a case that cannot be taken; the message says why."""


@dataclass(frozen=True)
class Outcome:
    """What one evaluation led to."""

    evaluation: Evaluation
    evaluation_id: int
    case_id: int | None


# ---- Evaluating -----------------------------------------------------------------------------------------


def _session_for(db: Session, contact: Contact, at: datetime) -> TreatmentSession | None:
    if contact.session_id is not None:
        return db.get(TreatmentSession, contact.session_id)
    return db.exec(  # an episode survey: the latest session of the episode before the answer
        select(TreatmentSession)
        .where(TreatmentSession.episode_id == contact.episode_id, col(TreatmentSession.completed_at) <= at)
        .order_by(col(TreatmentSession.completed_at).desc())
    ).first()


def _previous_evaluation(db: Session, contact: Contact) -> RuleEvaluation | None:
    """The latest evaluation of an earlier check in the same episode."""
    return db.exec(
        select(RuleEvaluation)
        .join(Contact, col(Contact.id) == col(RuleEvaluation.contact_id))
        .where(
            RuleEvaluation.episode_id == contact.episode_id,
            col(RuleEvaluation.contact_id) != contact.id,
            col(Contact.due_at) < contact.due_at,
        )
        .order_by(col(Contact.due_at).desc(), col(RuleEvaluation.id).desc())
    ).first()


def _previous_groc(db: Session, contact: Contact) -> int | None:
    return db.exec(
        select(SurveyResponse.groc15)
        .join(Contact, col(Contact.id) == col(SurveyResponse.contact_id))
        .where(
            SurveyResponse.episode_id == contact.episode_id,
            col(SurveyResponse.groc15).is_not(None),
            col(Contact.due_at) < contact.due_at,
        )
        .order_by(col(Contact.due_at).desc())
    ).first()


def inputs_for(
    db: Session, contact: Contact, at: datetime, answers: SurveyAnswers | None = None, *, missed: bool = False
) -> EvaluationInput:
    """The rule inputs for an answer to ``contact`` (or, with ``missed=True``, for its missing answer)."""
    session = _session_for(db, contact, at)
    episode = db.get(Episode, contact.episode_id)
    previous = _previous_evaluation(db, contact)
    hours = max(0.0, (at - session.completed_at).total_seconds() / 3600) if session else 0.0
    context = {
        "hours_since_session": hours,
        "step_id": contact.step_id,
        "regions_needled": list(session.regions_needled) if session else [],
        "injury_slug": contact.injury,
        "bsi_risk_class": session.bsi_risk_class if session else None,  # session contract, domain.md §1.3
        "baseline_nprs": episode.baseline_pain_nprs if episode else None,
        "previous_groc15": _previous_groc(db, contact),
        "previous_check_tier": previous.highest_tier if previous else None,
    }
    if missed:
        return EvaluationInput(missed_after_reminder=True, **context)
    if answers is None:
        raise ValueError("answers are needed unless the check was missed")
    return EvaluationInput.from_answers(answers, **context)


def record(
    db: Session,
    contact: Contact,
    evaluation: Evaluation,
    *,
    now: datetime,
    response_id: int | None,
    clinic_id: str,
    kind: str | None = None,
) -> Outcome:
    """Store the evaluation; open a case and queue its alert when the tier needs one. No commit.

    ``kind``: ``answer`` (the default with a response), ``partial`` (the red-flag part of a refused form) or
    ``missed`` (the default without one).
    """
    row = RuleEvaluation(
        clinic_id=clinic_id,
        patient_id=contact.patient_id,
        episode_id=contact.episode_id,
        session_id=contact.session_id,
        contact_id=_id(contact.id),
        response_id=response_id,
        kind=kind or ("answer" if response_id is not None else "missed"),
        evaluated_at=now,
        rules_version=evaluation.rules_version,
        inputs=_jsonable(evaluation.inputs),
        fired=[rule.model_dump(include={"id", "version", "tier", "upgraded"}) for rule in evaluation.fired],
        highest_tier=evaluation.highest_tier,
    )
    db.add(row)
    db.flush()
    evaluation_id = _id(row.id)
    tier = evaluation.highest_tier
    if tier not in ESCALATION_TIERS:
        return Outcome(evaluation, evaluation_id, None)
    escalating = [rule for rule in evaluation.fired if rule.tier in ESCALATION_TIERS]
    key = f"response:{response_id}" if response_id is not None else f"missed:{contact.id}"
    if response_id is not None:
        known = _rules_on_cases(db, response_id)
        if known:  # evaluated before (its red-flag part): a case only for what is new or more urgent now
            escalating = [rule for rule in escalating if TIER_RANK[rule.tier] > known.get(rule.id, (0, 0))[0]]
            if not escalating:
                return Outcome(evaluation, evaluation_id, min(case for _, case in known.values()))
            key = f"response:{response_id}:{evaluation_id}"
    case_id = _open_case(
        db,
        contact,
        escalating,
        key=key,
        evaluation_id=evaluation_id,
        response_id=response_id,
        clinic_id=clinic_id,
        now=now,
    )
    return Outcome(evaluation, evaluation_id, case_id)


def _rules_on_cases(db: Session, response_id: int) -> dict[str, tuple[int, int]]:
    """Each rule on a case of this answer: its highest tier rank there, and the first case that has it."""
    known: dict[str, tuple[int, int]] = {}
    for rule_id, tier, case_id in db.exec(
        select(CaseRule.rule_id, CaseRule.tier, EscalationCase.id)
        .join(EscalationCase, col(EscalationCase.id) == col(CaseRule.case_id))
        .where(EscalationCase.response_id == response_id)
        .order_by(col(EscalationCase.id))
    ):
        rank, first = known.get(rule_id, (0, _id(case_id)))
        known[rule_id] = (max(rank, TIER_RANK.get(tier, 0)), first)
    return known


def _open_case(
    db: Session,
    contact: Contact,
    escalating: list[FiredRule],
    *,
    key: str,
    evaluation_id: int,
    response_id: int | None,
    clinic_id: str,
    now: datetime,
) -> int | None:
    """Open the case for ``escalating`` (the fired rules it is about, most urgent first) and queue its alert."""
    tier = escalating[0].tier
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise CaseError(f"clinic {clinic_id} not found")
    due = sla.due_at(tier, now, config_of(clinic.config), clinic.timezone)
    insert_ignore(
        db,
        EscalationCase,
        [
            {
                "idempotency_key": key,
                "clinic_id": clinic_id,
                "patient_id": contact.patient_id,
                "episode_id": contact.episode_id,
                "session_id": contact.session_id,
                "contact_id": _id(contact.id),
                "response_id": response_id,
                "evaluation_id": evaluation_id,
                "tier": tier,
                "status": CaseStatus.OPEN.value,
                "opened_at": now,
                "due_at": due,
            }
        ],
    )
    case = db.exec(select(EscalationCase).where(EscalationCase.idempotency_key == key)).one()
    if case.evaluation_id != evaluation_id:
        return case.id  # opened before by an earlier evaluation of the same thing
    case_id = _id(case.id)
    db.add_all(
        CaseRule(case_id=case_id, rule_id=rule.id, rule_version=rule.version, tier=rule.tier) for rule in escalating
    )
    _queue_alert(db, case, audience="primary", now=now)
    db.add(
        AuditEvent(
            at=now,
            actor="rules",
            action="case.opened",
            entity="escalation_case",
            entity_id=str(case_id),
            detail={"tier": tier, "rules": [rule.id for rule in escalating], "evaluation_id": evaluation_id},
        )
    )
    return case_id


def _queue_alert(db: Session, case: EscalationCase, *, audience: str, now: datetime) -> None:
    insert_ignore(
        db,
        Alert,
        [
            {
                "idempotency_key": f"case:{case.id}:{audience}",
                "case_id": _id(case.id),
                "clinic_id": case.clinic_id,
                "audience": audience,
                "tier": case.tier,
                "due_at": now,
                "created_at": now,
            }
        ],
    )


def evaluate_answer(
    db: Session,
    contact: Contact,
    answers: SurveyAnswers,
    *,
    now: datetime,
    response_id: int,
    clinic_id: str,
    rules: RuleSet | None = None,
    kind: str = "answer",
) -> Outcome:
    """Evaluate a stored answer (``kind="partial"``: its red-flag part) and record the result (no commit)."""
    evaluation = evaluate(rules or get_rules(), inputs_for(db, contact, now, answers))
    return record(db, contact, evaluation, now=now, response_id=response_id, clinic_id=clinic_id, kind=kind)


# ---- The loop: acknowledge, resolve ---------------------------------------------------------------------


def acknowledge(db: Session, case_id: int, user: StaffUser, *, now: datetime) -> EscalationCase:
    """Mark a case as taken on by ``user``; re-alerts stop. Commits."""
    case = _case_for(db, case_id, user)
    if case.status != CaseStatus.OPEN.value:
        raise CaseError(f"case {case_id} is already {case.status}")
    case.status, case.acknowledged_at, case.acknowledged_by = CaseStatus.ACKNOWLEDGED.value, now, user.id
    _skip_pending_alerts(db, case_id, reason="acknowledged before it was sent")
    db.add(case)
    _audit(db, case_id, user, "case.acknowledged", now, {"tier": case.tier})
    db.commit()
    return case


def resolve(db: Session, case_id: int, user: StaffUser, note: str, *, now: datetime) -> EscalationCase:
    """Close a case with a note (what was done). Acknowledges it too if nobody had. Commits."""
    note = note.strip()
    if not note:
        raise CaseError("write what was done (the note is required to resolve a case)")
    if len(note) > 4000:
        raise CaseError(f"the note is {len(note)} characters; at most 4000")
    case = _case_for(db, case_id, user)
    if case.status == CaseStatus.RESOLVED.value:
        raise CaseError(f"case {case_id} is already resolved")
    if case.acknowledged_at is None:
        case.acknowledged_at, case.acknowledged_by = now, user.id
        _skip_pending_alerts(db, case_id, reason="resolved before it was sent")
    case.status, case.resolved_at, case.resolved_by, case.resolution_note = (
        CaseStatus.RESOLVED.value,
        now,
        user.id,
        note,
    )
    db.add(case)
    _audit(db, case_id, user, "case.resolved", now, {"tier": case.tier})
    db.commit()
    return case


def _case_for(db: Session, case_id: int, user: StaffUser) -> EscalationCase:
    case = db.get(EscalationCase, case_id)
    if case is None or case.clinic_id != user.clinic_id:
        raise CaseError(f"no case {case_id} at your clinic")
    return case


def _skip_pending_alerts(db: Session, case_id: int, *, reason: str) -> None:
    db.exec(
        update(Alert)
        .where(
            col(Alert.case_id) == case_id, col(Alert.status).in_(["pending", "retry"]), col(Alert.audience) == "backup"
        )
        .values(status="skipped", skip_reason=reason)
        .execution_options(synchronize_session=False)
    )


def _audit(db: Session, case_id: int, user: StaffUser, action: str, now: datetime, detail: dict[str, object]) -> None:
    db.add(
        AuditEvent(
            at=now,
            actor=f"staff:{user.id}",
            action=action,
            entity="escalation_case",
            entity_id=str(case_id),
            detail=detail,
        )
    )


# ---- The sweep: SLA re-alerts and missed safety checks (R13) ----------------------------------------------


@dataclass
class SweepResult:
    realerted: int = 0
    missed_evaluated: int = 0
    missed_cases: int = 0


def sweep(db: Session, *, now: datetime, rules: RuleSet | None = None, limit: int = 500) -> SweepResult:
    """Queue backup alerts for cases past their SLA, and evaluate missed safety checks (R13). Commits."""
    result = SweepResult()
    overdue = db.exec(
        select(EscalationCase)
        .where(
            EscalationCase.status == CaseStatus.OPEN.value,
            col(EscalationCase.due_at) <= now,
            col(EscalationCase.realerted_at).is_(None),
        )
        .limit(limit)
    ).all()
    for case in overdue:
        claimed = db.exec(
            update(EscalationCase)
            .where(
                col(EscalationCase.id) == case.id,
                col(EscalationCase.status) == CaseStatus.OPEN.value,
                col(EscalationCase.realerted_at).is_(None),
            )
            .values(realerted_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:
            _queue_alert(db, case, audience="backup", now=now)
            db.add(
                AuditEvent(
                    at=now,
                    actor="sla",
                    action="case.realerted",
                    entity="escalation_case",
                    entity_id=str(case.id),
                    detail={"tier": case.tier, "due_at": case.due_at.isoformat()},
                )
            )
            result.realerted += 1
        db.commit()
    for contact in _missed_safety_checks(db, now=now, limit=limit):
        evaluation = evaluate(rules or get_rules(), inputs_for(db, contact, now, missed=True))
        clinic_id = db.exec(select(Episode.clinic_id).where(Episode.id == contact.episode_id)).one()
        outcome = record(db, contact, evaluation, now=now, response_id=None, clinic_id=clinic_id)
        db.commit()
        result.missed_evaluated += 1
        result.missed_cases += outcome.case_id is not None
    return result


def _missed_safety_checks(db: Session, *, now: datetime, limit: int) -> list[Contact]:
    """Safety checks with no answer after their reminder (or a closed window), after a same-day or emergency
    evaluation earlier in the episode, not yet evaluated as missed."""
    reminded_by = now - timedelta(hours=MISSED_AFTER_REMINDER_HOURS)
    reminded = exists().where(
        col(Notification.contact_id) == col(Contact.id),
        col(Notification.sequence) >= 1,
        col(Notification.status) == NotificationStatus.SENT.value,
        col(Notification.sent_at) <= reminded_by,
    )
    escalated_before = exists().where(
        col(RuleEvaluation.episode_id) == col(Contact.episode_id),
        col(RuleEvaluation.highest_tier).in_(["SAME_DAY", "EMERGENCY"]),
        col(RuleEvaluation.evaluated_at) < col(Contact.due_at),
    )
    evaluated = exists().where(col(RuleEvaluation.contact_id) == col(Contact.id))
    missed = and_(
        col(Contact.safety).is_(True),
        or_(
            col(Contact.status) == ContactStatus.EXPIRED.value,
            and_(col(Contact.status) == ContactStatus.SENT.value, reminded),
        ),
    )
    return list(db.exec(select(Contact).where(missed, escalated_before, ~evaluated).limit(limit)).all())


def _jsonable(values: dict[str, object]) -> dict[str, object]:
    return {key: (value if not isinstance(value, datetime) else value.isoformat()) for key, value in values.items()}


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - rows from the database always have ids
        raise RuntimeError("row has no id")
    return value
