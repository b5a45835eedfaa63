"""Safety escalation: every rule evaluation, the cases it opens, and the alerts sent for them.

- ``RuleEvaluation``: one row per evaluation (an answer, or a missed safety check for R13): the rule-set
  version, the inputs and the fired rules — the audit of "rule version, inputs, result" (domain.md §6).
- ``EscalationCase``: one per evaluation that reached EMERGENCY, SAME_DAY or NEXT_BD; open until a
  practitioner acknowledges and resolves it (with a note). ``due_at`` is the SLA deadline for acknowledging.
- ``CaseRule``: the rules behind a case, one row each, so reports can count escalations by rule in SQL.
- ``Alert``: the practitioner-alert outbox (unique key, written before sending, claimed atomically).
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class RuleEvaluation(SQLModel, table=True):
    __tablename__ = "rule_evaluation"

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    episode_id: int = Field(foreign_key="episode.id", index=True)
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id", index=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    response_id: int | None = Field(default=None, foreign_key="survey_response.id", index=True)
    kind: str = Field(max_length=16, description="answer, or missed (a safety check left unanswered, R13)")
    evaluated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    rules_version: str = Field(max_length=40)
    inputs: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    fired: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False), description="id, version, tier")
    highest_tier: str | None = Field(default=None, max_length=16)


class CaseStatus(StrEnum):
    OPEN = "open"  # nobody has acknowledged it yet
    ACKNOWLEDGED = "acknowledged"  # someone took it on; re-alerts stop
    RESOLVED = "resolved"  # closed with a note


class EscalationCase(SQLModel, table=True):
    __tablename__ = "escalation_case"
    __table_args__ = (Index("ix_case_clinic_status", "clinic_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=120, unique=True, description="evaluation:<id>")
    clinic_id: str = Field(foreign_key="clinic.id", max_length=64)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    episode_id: int = Field(foreign_key="episode.id", index=True)
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id", index=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    response_id: int | None = Field(default=None, foreign_key="survey_response.id")
    evaluation_id: int = Field(foreign_key="rule_evaluation.id", unique=True)
    tier: str = Field(max_length=16, description="EMERGENCY, SAME_DAY or NEXT_BD")
    status: str = Field(default=CaseStatus.OPEN.value, max_length=16, description="a CaseStatus")
    opened_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
    due_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False), description="acknowledge by (SLA)")
    acknowledged_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    acknowledged_by: int | None = Field(default=None, foreign_key="staff_user.id")
    resolved_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    resolved_by: int | None = Field(default=None, foreign_key="staff_user.id")
    resolution_note: str | None = Field(default=None, max_length=4000)
    realerted_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True), description="backup alerted after the SLA"
    )


class CaseRule(SQLModel, table=True):
    __tablename__ = "case_rule"
    __table_args__ = (UniqueConstraint("case_id", "rule_id", name="uq_case_rule"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="escalation_case.id", index=True)
    rule_id: str = Field(max_length=40, index=True)
    rule_version: int
    tier: str = Field(max_length=16)


class AlertStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # e.g. the case was acknowledged before a backup alert went out


class Alert(SQLModel, table=True):
    __table_args__ = (Index("ix_alert_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=120, unique=True, description="case:<id>:primary or case:<id>:backup")
    case_id: int | None = Field(
        default=None, foreign_key="escalation_case.id", index=True, description="None for an undelivered-message alert"
    )
    notification_id: int | None = Field(
        default=None, foreign_key="notification.id", description="the patient message an undelivered alert reports"
    )
    clinic_id: str = Field(foreign_key="clinic.id", max_length=64)
    audience: str = Field(max_length=16, description="primary, backup, or undelivered (a patient message failed)")
    tier: str = Field(max_length=16)
    status: str = Field(default=AlertStatus.PENDING.value, max_length=16, description="an AlertStatus")
    due_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    attempts: int = 0
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    claim_token: str | None = Field(default=None, max_length=32, description="who holds the claim; checked on release")
    send_started_at: datetime | None = Field(
        default=None,
        sa_column=Column(UTCDateTime, nullable=True),
        description="a send began under the current claim and its outcome is not recorded yet",
    )
    ambiguous_attempts: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}, description="handed over, but no reply came back"
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    last_error: str | None = Field(default=None, max_length=2000)
    skip_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
