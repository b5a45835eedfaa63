"""Treatment sessions, and the session-completed contract clinics' integrations send.

The contract (``SessionCompleted``) is what clinics code against: fields may be added, never
removed or narrowed. Structural checks live here; checks against clinical data (known injury,
allowed regions and ROM measures) are made by ``needlecare.intake.ingest`` from the catalogue.
"""

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as Contract
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow
from models.checks import check_email, check_timezone

_PHONE = re.compile(r"^\+?[0-9(][0-9 ().-]{2,18}[0-9]$")
_EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PractitionerIn(_Strict):
    external_id: str = Contract(pattern=_EXTERNAL_ID)
    name: str = Contract(min_length=1, max_length=200)
    email: str | None = Contract(default=None, max_length=320)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return check_email(value)


class ConsentIn(_Strict):
    email: bool = False
    sms: bool = False


class PatientIn(_Strict):
    external_id: str = Contract(pattern=_EXTERNAL_ID)
    first_name: str = Contract(min_length=1, max_length=100)
    last_name: str = Contract(min_length=1, max_length=100)
    email: str | None = Contract(default=None, max_length=320)
    phone: str | None = Contract(default=None, max_length=20)
    timezone: str = Contract(default="UTC", max_length=64)
    consent: ConsentIn = ConsentIn()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return check_email(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        """The characters only; ``needlecare.intake.ingest`` reads the number (with the clinic's region) and
        stores it in E.164 form."""
        if value is not None and not _PHONE.match(value):
            raise ValueError(
                "must be a phone number: digits with optional spaces, dots, dashes or brackets, in E.164 form "
                "('+' then country code and number, e.g. +447700900123) or as dialled in the clinic's country"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)


class RomIn(_Strict):
    measure: str = Contract(min_length=1, max_length=64)
    value: float


class BaselineIn(_Strict):
    pain_nprs: int | None = Contract(default=None, ge=0, le=10, description="NPRS 0-10, usual pain over 24 h")
    rom: RomIn | None = None


class SessionCompleted(_Strict):
    """The body of ``POST /api/v1/events/session-completed`` and of ``needlecare session complete``."""

    clinic_id: str = Contract(min_length=2, max_length=64)
    external_session_id: str = Contract(pattern=_EXTERNAL_ID)
    completed_at: datetime
    practitioner: PractitionerIn
    patient: PatientIn
    injury: str = Contract(min_length=1, max_length=64)
    side: Literal["left", "right", "both"]
    regions_needled: list[str] = Contract(min_length=1, max_length=20)
    muscles_needled: list[str] = Contract(default_factory=list, max_length=40)
    baseline: BaselineIn = BaselineIn()
    # Bone stress injury only (domain.md §1.3), all optional. ``bsi_site_code`` is checked against the coded
    # list (needlecare/data/bsi_sites.toml) by needlecare.intake.ingest, which also refuses these fields for
    # any other injury and a class that contradicts the coded site.
    bsi_site: str | None = Contract(default=None, min_length=1, max_length=200, description="site, free text")
    bsi_site_code: str | None = Contract(default=None, pattern=r"^[a-z0-9_]{1,64}$", description="coded site")
    bsi_risk_class: Literal["high", "low"] | None = Contract(default=None, description="high- or low-risk site")
    mri_grade: int | None = Contract(default=None, ge=1, le=4, description="MRI grade 1-4")
    cleared_to_hop: bool | None = Contract(default=None, description="set by the clinician")

    @field_validator("completed_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-11-22T14:30:00Z")
        return value

    @field_validator("completed_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a time zone offset, e.g. 2026-11-22T14:30:00Z")
        return value

    @field_validator("muscles_needled")
    @classmethod
    def _muscles(cls, value: list[str]) -> list[str]:
        for item in value:
            if not 1 <= len(item) <= 64:
                raise ValueError("each muscle name must be 1-64 characters")
        return value


class TreatmentSession(SQLModel, table=True):
    __tablename__ = "treatment_session"
    __table_args__ = (
        UniqueConstraint("clinic_id", "external_session_id", name="uq_session_external"),
        Index("ix_session_episode_completed", "episode_id", "completed_at", "id"),  # first session per episode
    )

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    external_session_id: str = Field(max_length=64)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    episode_id: int | None = Field(default=None, foreign_key="episode.id", index=True)
    practitioner_id: int = Field(foreign_key="practitioner.id", index=True)
    completed_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    injury: str = Field(max_length=64, index=True)
    side: str = Field(max_length=8)
    regions_needled: list[str] = Field(sa_column=Column(JSON, nullable=False))
    muscles_needled: list[str] = Field(sa_column=Column(JSON, nullable=False))
    baseline_pain_nprs: int | None = None
    baseline_rom_measure: str | None = Field(default=None, max_length=64)
    baseline_rom_value: float | None = None
    bsi_site: str | None = Field(default=None, max_length=200, description="bone stress site, free text (§1.3)")
    bsi_site_code: str | None = Field(default=None, max_length=64, description="coded bone stress site")
    bsi_risk_class: str | None = Field(default=None, max_length=8, description="high or low (feeds rule R14)")
    mri_grade: int | None = Field(default=None, description="MRI grade 1-4")
    cleared_to_hop: bool | None = Field(default=None, description="the clinician allows a hop test")
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    planned_at: datetime | None = Field(
        default=None,
        sa_column=Column(UTCDateTime, nullable=True, index=True),
        description="When the follow-up contacts were planned; NULL means a flow still has to",
    )


class SessionPublic(BaseModel):
    """What the API tells the caller about a session: IDs and status only."""

    session_id: int
    status: Literal["accepted", "duplicate"]
