"""Text messages from patients: every inbound SMS the gateway posts, stored once per provider message id."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class InboundAction(StrEnum):
    STOP = "stop"  # SMS opt-out recorded
    START = "start"  # SMS opt-in again
    HELP = "help"  # help text sent back
    ANSWER = "answer"  # understood as an answer to an open check-in
    UNPARSED = "unparsed"  # not understood: the link was sent back, nothing guessed
    UNKNOWN_SENDER = "unknown_sender"  # no patient with this number
    NO_OPEN_CHECK = "no_open_check"  # a patient, but no check-in open that a reply can answer


class SmsInbound(SQLModel, table=True):
    __tablename__ = "sms_inbound"

    id: int | None = Field(default=None, primary_key=True)
    provider_message_id: str = Field(max_length=128, unique=True, description="the gateway's id; a repost is ignored")
    from_phone: str = Field(max_length=20, description="E.164")
    to_phone: str | None = Field(default=None, max_length=20)
    body: str = Field(max_length=1600)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    response_id: int | None = Field(default=None, foreign_key="survey_response.id")
    action: str = Field(max_length=20, description="an InboundAction")
    reply_text: str | None = Field(
        default=None, max_length=1600, description="what is texted back; sent as the notification sms_reply:<id>"
    )
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
