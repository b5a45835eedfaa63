"""Settings from the environment (prefix NEEDLECARE_), read once through ``get_settings()``."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEEDLECARE_", env_nested_delimiter="__", extra="ignore")

    env: Literal["development", "production", "test"] = Field(
        default="development",
        description="development enables the mail capture, /outbox and the demo clinic; "
        "production refuses default secrets.",
    )
    data_dir: Path = Field(default=Path("var"), description="Where the embedded defaults keep their files.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the application database; default sqlite:///<data_dir>/needlecare.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    prefect_api_url: str = Field(default="http://127.0.0.1:4200/api", description="Prefect API every process talks to.")
    prefect_port: int = Field(default=4200, description="Port of the local Prefect server `make run` starts.")
    web_host: str = Field(default="127.0.0.1", description="Interface the web app binds to.")
    web_port: int = Field(default=8000, description="Port of the web app.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL used in links inside patient messages."
    )
    smtp_capture_host: str = Field(default="127.0.0.1", description="Local mail capture (development).")
    smtp_capture_port: int = Field(default=1025, description="Port of the local mail capture.")
    mail_capture_dir: Path | None = Field(
        default=None, description="Where captured messages are stored; default <data_dir>/outbox."
    )
    receipts_dir: Path | None = Field(
        default=None,
        description="Where senders keep a receipt for each message a provider accepted until its outcome is "
        "committed; default <data_dir>/receipts. Give workers on one machine the same one (a shared directory "
        "for workers on several), so a sender killed before its commit is not followed by a second copy.",
    )
    patient_email_url: str | None = Field(
        default=None,
        description="Apprise mailto:// URL (without the recipient) for patient email; default: the "
        "local mail capture. Example: mailtos://user:pass@smtp.example.org?from=care@clinic.example",
    )
    mail_from: str = Field(default="aftercare@needlecare.local", description="From address of patient mail.")
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_KEY), description="Signs links; must be set outside development."
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-clinic webhook secrets that override the database, as JSON: {"riverside-physio": "..."}',
    )
    aftercare_max_age_hours: float = Field(
        default=48, description="An aftercare notice older than this after the session is skipped, not sent."
    )
    delivery_backoff_seconds: float = Field(
        default=30, gt=0, description="First retry delay after a transient failure; doubles on each further attempt."
    )
    delivery_backoff_max_seconds: float = Field(
        default=600,
        gt=0,
        description=(
            "Longest delay between two attempts. Retries go on, at most this far apart, while the message is still "
            "useful: an aftercare notice until AFTERCARE_MAX_AGE_HOURS after the session, a check-in or reminder "
            "until its answer window closes, a practitioner alert until its case is acknowledged."
        ),
    )
    delivery_timeout_seconds: float = Field(
        default=15, gt=0, description="Timeout of every network operation of one send (connect, each SMTP reply)."
    )
    claim_lease_seconds: float = Field(
        default=45,
        gt=0,
        description=(
            "A claim not renewed for this long is taken as abandoned (its worker died) and claimed again. "
            "Renewed every third of it while a send is in progress; keep it above DELIVERY_TIMEOUT_SECONDS. "
            "45 s: a dead worker's messages are taken again by the next pass after it, within about 80 s "
            "(lease + DISPATCH_INTERVAL_SECONDS + a flow-run start)."
        ),
    )
    claim_batch: int = Field(default=20, ge=1, le=1000, description="Messages one sender claims at a time.")
    drain_helpers: int = Field(
        default=2,
        ge=0,
        le=16,
        description=(
            "Extra runs an aftercare or dispatch run asks for when more than two claim batches are due, so "
            "that several workers share a burst (each helper drains once, then stops). 0: never."
        ),
    )
    drain_linger_seconds: float = Field(
        default=20, ge=0, description="How long an aftercare run keeps polling for new work once idle."
    )
    drain_poll_seconds: float = Field(default=0.25, gt=0, description="Poll interval while lingering.")
    protocols_dir: Path | None = Field(
        default=None,
        description="A clinic's own protocol packs (<injury>.toml); a file here replaces the shipped one.",
    )
    quiet_hours_start: int = Field(default=21, ge=0, le=23, description="No patient message from this hour…")
    quiet_hours_end: int = Field(default=8, ge=0, le=23, description="…until this hour, in the patient's time zone.")
    dispatch_interval_seconds: int = Field(
        default=30,
        ge=5,
        description="How often the dispatch flow sends follow-ups that fall due and plans sessions whose event "
        "was lost.",
    )

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> "Settings":
        if self.env == "production":
            if self.secret_key.get_secret_value() == DEV_SECRET_KEY:
                raise ValueError(
                    "NEEDLECARE_SECRET_KEY is the development default; set a long random value "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
            if len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("NEEDLECARE_SECRET_KEY must be at least 32 characters in production")
            if self.patient_email_url is None:
                raise ValueError(
                    "NEEDLECARE_PATIENT_EMAIL_URL must be set in production (the local mail capture "
                    "is for development only)"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'needlecare.db'}"

    @property
    def resolved_mail_capture_dir(self) -> Path:
        return self.mail_capture_dir or self.data_dir / "outbox"

    @property
    def resolved_receipts_dir(self) -> Path:
        return self.receipts_dir or self.data_dir / "receipts"

    @property
    def resolved_patient_email_url(self) -> str:
        if self.patient_email_url:
            return self.patient_email_url
        return f"mailto://{self.smtp_capture_host}:{self.smtp_capture_port}?mode=insecure&from={self.mail_from}"

    @property
    def is_development(self) -> bool:
        return self.env != "production"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
