"""A patient's answers to one contact. Numeric answers have their own columns for reporting."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class SurveyResponse(SQLModel, table=True):
    __tablename__ = "survey_response"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", unique=True, description="one answer per contact")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id", index=True)
    episode_id: int = Field(foreign_key="episode.id", index=True)
    injury: str = Field(max_length=64, index=True)
    step_id: str = Field(max_length=40, index=True)
    channel: str = Field(max_length=10, description="web or api")
    submitted_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    nprs_usual: int | None = Field(default=None, description="pain now, 0-10")
    nprs_worst: int | None = Field(default=None, description="worst pain in the last 24 h, 0-10")
    soreness: int | None = Field(default=None, description="post-needling soreness, 0-10")
    bruise: str | None = Field(default=None, max_length=16, description="none, small, large, spreading")
    groc15: int | None = Field(default=None, description="global rating of change, -7..+7")
    rom_measure: str | None = Field(default=None, max_length=64)
    rom_value: float | None = None
    psfs: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    redflags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    free_text: str | None = Field(default=None, max_length=2000)
    fainted: bool | None = None
    ran: bool | None = None
    run_pain: int | None = None
    advice_tier: str | None = Field(default=None, max_length=16, description="what the patient was shown")
