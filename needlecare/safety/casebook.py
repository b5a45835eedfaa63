"""Reading escalation cases for the staff pages: the open list by tier and age, and one case in full.

Always scoped to one clinic: a case id from another clinic reads as "no such case".
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case as sql_case
from sqlmodel import Session, col, select

from models import (
    Alert,
    AuditEvent,
    CaseRule,
    CaseStatus,
    Clinic,
    Contact,
    EscalationCase,
    Patient,
    RuleEvaluation,
    StaffUser,
    SurveyResponse,
)
from needlecare.safety.rules.ruleset import get_rules
from needlecare.safety.rules.variables import TIERS

_TIER_ORDER = sql_case({tier: rank for rank, tier in enumerate(TIERS)}, value=col(EscalationCase.tier), else_=99)


@dataclass(frozen=True)
class CaseRow:
    id: int
    tier: str
    status: str
    opened_at: datetime
    due_at: datetime
    overdue: bool
    realerted: bool
    patient_name: str
    step_id: str
    rules: list[str]


@dataclass(frozen=True)
class CaseDetail:
    case: EscalationCase
    row: CaseRow
    patient: Patient
    clinic: Clinic
    rules: list[dict[str, str]]  # id, tier, practitioner message
    evaluation: RuleEvaluation | None
    response: SurveyResponse | None
    alerts: list[Alert]
    timeline: list[dict[str, Any]] = field(default_factory=list)


def _rules_by_case(db: Session, case_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {case_id: [] for case_id in case_ids}
    if case_ids:
        for case_id, rule_id in db.exec(
            select(CaseRule.case_id, CaseRule.rule_id)
            .where(col(CaseRule.case_id).in_(case_ids))
            .order_by(col(CaseRule.id))
        ):
            found[case_id].append(rule_id)
    return found


def list_cases(
    db: Session, clinic_id: str, *, now: datetime, status: str = "active", limit: int = 200
) -> list[CaseRow]:
    """Cases of one clinic. ``active``: open and acknowledged, most urgent tier first, oldest first;
    ``resolved``: the latest resolved ones."""
    query = (
        select(EscalationCase, Patient.first_name, Patient.last_name, Contact.step_id)
        .join(Patient, col(Patient.id) == col(EscalationCase.patient_id))
        .join(Contact, col(Contact.id) == col(EscalationCase.contact_id))
        .where(EscalationCase.clinic_id == clinic_id)
    )
    if status == "resolved":
        query = query.where(EscalationCase.status == CaseStatus.RESOLVED.value).order_by(
            col(EscalationCase.resolved_at).desc()
        )
    else:
        query = query.where(col(EscalationCase.status) != CaseStatus.RESOLVED.value).order_by(
            col(EscalationCase.status) != CaseStatus.OPEN.value, _TIER_ORDER, col(EscalationCase.opened_at)
        )
    rows = db.exec(query.limit(limit)).all()
    rules = _rules_by_case(db, [c.id for c, *_ in rows if c.id is not None])
    return [_row(c, f"{first} {last}", step, rules.get(c.id or 0, []), now) for c, first, last, step in rows]


def _row(case: EscalationCase, name: str, step_id: str, rules: list[str], now: datetime) -> CaseRow:
    return CaseRow(
        id=case.id or 0,
        tier=case.tier,
        status=case.status,
        opened_at=case.opened_at,
        due_at=case.due_at,
        overdue=case.status == CaseStatus.OPEN.value and case.due_at <= now,
        realerted=case.realerted_at is not None,
        patient_name=name,
        step_id=step_id,
        rules=rules,
    )


def counts_by_tier(db: Session, clinic_id: str) -> dict[str, int]:
    """Open (unacknowledged) cases per tier."""
    counts: dict[str, int] = {tier: 0 for tier in TIERS}
    for tier in db.exec(
        select(EscalationCase.tier).where(
            EscalationCase.clinic_id == clinic_id, EscalationCase.status == CaseStatus.OPEN.value
        )
    ):
        counts[tier] = counts.get(tier, 0) + 1
    return counts


def case_detail(db: Session, clinic_id: str, case_id: int, *, now: datetime) -> CaseDetail | None:
    case = db.get(EscalationCase, case_id)
    if case is None or case.clinic_id != clinic_id:
        return None
    patient = db.get(Patient, case.patient_id)
    clinic = db.get(Clinic, case.clinic_id)
    contact = db.get(Contact, case.contact_id)
    if patient is None or clinic is None or contact is None:
        return None
    rule_rows = db.exec(select(CaseRule).where(CaseRule.case_id == case_id).order_by(col(CaseRule.id))).all()
    texts = {rule.id: rule.practitioner_message for rule in get_rules().rules}
    rules = [
        {"id": r.rule_id, "tier": r.tier, "message": texts.get(r.rule_id, "rule no longer in the rule set")}
        for r in rule_rows
    ]
    alerts = list(db.exec(select(Alert).where(Alert.case_id == case_id).order_by(col(Alert.id))).all())
    return CaseDetail(
        case=case,
        row=_row(
            case, f"{patient.first_name} {patient.last_name}", contact.step_id, [r.rule_id for r in rule_rows], now
        ),
        patient=patient,
        clinic=clinic,
        rules=rules,
        evaluation=db.get(RuleEvaluation, case.evaluation_id),
        response=db.get(SurveyResponse, case.response_id) if case.response_id is not None else None,
        alerts=alerts,
        timeline=_timeline(db, case_id),
    )


def _timeline(db: Session, case_id: int) -> list[dict[str, Any]]:
    """Who did what and when (the audit log of this case), oldest first, with staff names."""
    events = db.exec(
        select(AuditEvent)
        .where(AuditEvent.entity == "escalation_case", AuditEvent.entity_id == str(case_id))
        .order_by(col(AuditEvent.at), col(AuditEvent.id))
    ).all()
    staff_ids = [int(e.actor.split(":", 1)[1]) for e in events if e.actor.startswith("staff:")]
    names = (
        dict(db.exec(select(StaffUser.id, StaffUser.name).where(col(StaffUser.id).in_(staff_ids))).all())
        if staff_ids
        else {}
    )
    timeline = []
    for event in events:
        who = event.actor
        if who.startswith("staff:"):
            who = names.get(int(who.split(":", 1)[1]), who)
        timeline.append({"at": event.at, "who": who, "action": event.action, "detail": event.detail})
    return timeline
