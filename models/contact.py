"""A planned follow-up contact: one row per (session, step) or (episode, step), unique.

The contact is what a survey link points at; the messages that announce it (first send and
reminders) are Notification rows that reference it.
"""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, false
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class ContactStatus(StrEnum):
    PLANNED = "planned"  # waiting for its time
    SENT = "sent"  # the survey link went out; answers are accepted until the window closes
    ANSWERED = "answered"
    EXPIRED = "expired"  # the window closed without an answer
    SKIPPED = "skipped"  # not sent on purpose; see skip_reason


class Contact(SQLModel, table=True):
    __table_args__ = (
        Index("ix_contact_status_due", "status", "due_at"),
        # Covering indexes of the outcome statements (migrations 0013, 0014): a cohort's contacts by episode, a
        # session's.
        Index(
            "ix_contact_report_episode",
            "episode_id",
            "status",
            "step_id",
            "scope",
            "patient_id",
            "session_id",
            "id",
            "sent_email",
            "sent_sms",
            "first_by_sms",
            "answered_by_sms",
        ),
        Index("ix_contact_report_session", "session_id", "status", "step_id", "scope", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True, description="session:<id>:<step> or episode:<id>:<step>")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id", index=True)
    episode_id: int = Field(foreign_key="episode.id", index=True)
    injury: str = Field(max_length=64)
    step_id: str = Field(max_length=40)
    scope: str = Field(max_length=10, description="session or episode")
    safety: bool = False
    status: str = Field(default=ContactStatus.PLANNED.value, max_length=16, description="a ContactStatus")
    due_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    window_opens_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    window_closes_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    answered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    skip_reason: str | None = Field(default=None, max_length=200)
    protocol_version: str = Field(default="", max_length=40)
    # Kept by the database (triggers on notification and survey_response, migration 0014), never written by the
    # application: a first message or reminder of this contact was sent by email / by SMS; its first message went
    # by SMS; its answer came by SMS reply.
    sent_email: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    sent_sms: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    first_by_sms: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    answered_by_sms: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
