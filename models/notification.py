"""The outbox: one row per notice, keyed for exactly-once delivery, written before sending."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class NotificationStatus(StrEnum):
    PENDING = "pending"  # planned, waiting for due_at
    SENDING = "sending"  # claimed by one dispatcher; nobody else may touch it
    RETRY = "retry"  # a transient failure; due again at due_at
    SENT = "sent"  # handed to the transport
    FAILED = "failed"  # permanent failure, or out of attempts; see last_error
    SKIPPED = "skipped"  # not sent on purpose; see skip_reason


class Notification(SQLModel, table=True):
    __table_args__ = (
        Index("ix_notification_due", "status", "due_at"),
        # Covering index of the response-by-channel statement (migration 0013): a contact's sent messages.
        Index("ix_notification_report_contact", "contact_id", "channel", "status", "kind", "sequence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True, description="e.g. aftercare:session:42")
    kind: str = Field(max_length=40)
    channel: str = Field(max_length=20, description="email or sms")
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    sequence: int = Field(default=0, description="0 = first message, 1.. = reminders")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    sms_inbound_id: int | None = Field(
        default=None, foreign_key="sms_inbound.id", description="the text message an sms_reply answers"
    )
    status: str = Field(default=NotificationStatus.PENDING.value, max_length=16, description="a NotificationStatus")
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
