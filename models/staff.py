"""Staff who log in to the practitioner pages, and their browser sessions.

A staff user belongs to one clinic and sees only that clinic's cases and reports. Passwords are stored
as salted scrypt hashes (needlecare/auth.py); a browser session is a random token whose SHA-256 hash is
the only thing stored, so a copy of the database cannot be used to log in. A user may also have a TOTP
second factor (``totp_secret``); the last accepted time step is kept so a code is accepted once.
"""

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_user"

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    email: str = Field(max_length=320, unique=True, description="login name, stored lower-case")
    name: str = Field(max_length=200)
    password_hash: str = Field(max_length=300)
    practitioner_id: int | None = Field(default=None, foreign_key="practitioner.id")
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    last_login_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    totp_secret: str | None = Field(
        default=None, max_length=64, description="Base32 TOTP secret when the second factor is on (RFC 6238)"
    )
    totp_last_step: int | None = Field(default=None, description="Time step of the last accepted code (no replay)")


class WebSession(SQLModel, table=True):
    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, description="SHA-256 hex of the cookie value")
    user_id: int = Field(foreign_key="staff_user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
