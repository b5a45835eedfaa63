"""A patient's answers to one contact. Numeric answers have their own columns for reporting.

Each 0-10 pain or soreness score is stored with the recall period it was asked with (domain.md §2: always
store the recall / context), in the ``*_recall`` column beside it: NULL exactly when the score is NULL.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class PainRecall(StrEnum):
    """The recall period (or context) a 0-10 score was asked with (domain.md §2)."""

    NOW = "now"  # at the moment of answering
    AVERAGE_24H = "average_24h"  # on average over the last 24 hours (usual pain)
    WORST_24H = "worst_24h"  # the worst over the last 24 hours
    DURING_RUN = "during_run"  # during the patient's run


BASELINE_PAIN_RECALL = PainRecall.AVERAGE_24H
"""The recall of ``episode.baseline_pain_nprs``: usual pain over the last 24 h at the start of the episode
(domain.md §6 ``baseline_nprs``; the session contract's ``baseline.pain_nprs``)."""

RECALL_COLUMNS: dict[str, str] = {
    "nprs_usual": "nprs_usual_recall",
    "nprs_worst": "nprs_worst_recall",
    "soreness": "soreness_recall",
    "run_pain": "run_pain_recall",
}
"""Each stored 0-10 score and the column holding the recall it was asked with."""

_RECALL = "recall period the score was asked with: now, average_24h, worst_24h, during_run (NULL: no score)"


class SurveyResponse(SQLModel, table=True):
    __table_args__ = (  # covering indexes of the outcome statements (migration 0013)
        Index(
            "ix_survey_response_report_episode",
            *("episode_id", "step_id", "nprs_usual_recall", "nprs_usual", "rom_measure", "rom_value", "patient_id"),
            *("session_id", "contact_id", "submitted_at", "id"),
        ),
        Index(
            "ix_survey_response_report_contact",
            *("contact_id", "submitted_at", "nprs_usual", "nprs_usual_recall", "groc15", "soreness", "bruise"),
            *("channel", "id"),
        ),
    )

    __tablename__ = "survey_response"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", unique=True, description="one answer per contact")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    session_id: int | None = Field(default=None, foreign_key="treatment_session.id", index=True)
    episode_id: int = Field(foreign_key="episode.id", index=True)
    injury: str = Field(max_length=64, index=True)
    step_id: str = Field(max_length=40, index=True)
    channel: str = Field(max_length=10, description="web, api or sms")
    submitted_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    nprs_usual: int | None = Field(default=None, description="injury pain, 0-10, with the recall in nprs_usual_recall")
    nprs_usual_recall: str | None = Field(default=None, max_length=16, description=_RECALL)
    nprs_worst: int | None = Field(default=None, description="worst pain in the last 24 h, 0-10")
    nprs_worst_recall: str | None = Field(default=None, max_length=16, description=_RECALL)
    soreness: int | None = Field(default=None, description="post-needling soreness, 0-10")
    soreness_recall: str | None = Field(default=None, max_length=16, description=_RECALL)
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
    run_pain_recall: str | None = Field(default=None, max_length=16, description=_RECALL)
    advice_tier: str | None = Field(default=None, max_length=16, description="what the patient was shown")
