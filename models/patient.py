"""Patients: contact details, time zone and consent per channel stay in this table only."""

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class Patient(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("clinic_id", "external_id", name="uq_patient_external"),)

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    external_id: str = Field(max_length=64)
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=20)
    timezone: str = Field(default="UTC", max_length=64)
    consent_email: bool = False
    consent_sms: bool = False
    opted_out_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    sms_opted_out_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True), description="replied STOP; START clears it"
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
