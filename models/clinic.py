"""Clinics and their practitioners."""

import re
from datetime import datetime
from typing import Any

from pydantic import field_validator
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow
from models.checks import check_email, check_timezone

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$")


class ClinicBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320, description="Where the clinic's own mail goes")
    phone: str | None = Field(default=None, max_length=40)
    timezone: str = Field(default="UTC", max_length=64)
    region: str | None = Field(
        default=None, max_length=2, description="ISO 3166 country code for reading local phone numbers, e.g. GB"
    )


class ClinicCreate(ClinicBase):
    id: str = Field(max_length=64, description="Slug used by the clinic's integration, e.g. riverside-physio")

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                "must be 2-64 characters of lower-case letters, digits and '-', "
                "starting and ending with a letter or digit (e.g. riverside-physio)"
            )
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        check_email(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError("must be a two-letter ISO 3166 country code in capitals, e.g. GB or US")
        return value


class Clinic(ClinicBase, table=True):
    id: str = Field(primary_key=True, max_length=64)
    webhook_secret: str = Field(max_length=128, description="HMAC key for signed events (the primary one)")
    webhook_secret_previous: str | None = Field(
        default=None,
        max_length=128,
        description="The key before the last rotation, still accepted until the rotation is finished",
    )
    webhook_secret_previous_until: datetime | None = Field(
        default=None,
        sa_column=Column(UTCDateTime, nullable=True),
        description="When the previous key stops being accepted; NULL = until `clinic rotate-secret --finish`",
    )
    webhook_legacy_signatures: bool = Field(
        default=False,
        description="Also accept the deprecated untimed `sha256=` signature (clinics registered before `t=,v1=`)",
    )
    sms_url: str | None = Field(
        default=None,
        max_length=1000,
        description="The clinic's own Apprise SMS URL (holds credentials, never shown); NULL = PATIENT_SMS_URL",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="Alert routes, SLAs, opening hours, reporting rules (needlecare/clinic_config.py); NULL = defaults",
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ClinicPublic(ClinicBase):
    id: str
    created_at: datetime


class Practitioner(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("clinic_id", "external_id", name="uq_practitioner_external"),)

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    external_id: str = Field(max_length=64)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
