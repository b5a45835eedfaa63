"""An injury episode: one patient, one injury, from the first session on. Outcome surveys and
their baseline belong to the episode, not to each session (domain.md §4.2)."""

from datetime import datetime

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class Episode(SQLModel, table=True):
    __table_args__ = (
        Index("ix_episode_clinic_started", "clinic_id", "started_at"),  # report period filter
        Index(  # covering index of the outcome statements (migration 0013)
            "ix_episode_report",
            "clinic_id",
            "injury",
            "started_at",
            "id",
            "patient_id",
            "baseline_pain_nprs",
            "baseline_rom_measure",
            "baseline_rom_value",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    injury: str = Field(max_length=64, index=True)
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    baseline_pain_nprs: int | None = None
    baseline_rom_measure: str | None = Field(default=None, max_length=64)
    baseline_rom_value: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
