"""Settings from the environment (prefix NEEDLECARE_), read once through ``get_settings()``.

Fail closed: the published development ``SECRET_KEY`` (and any key shorter than 32 characters) is accepted only
by ``NEEDLECARE_ENV=development`` with the web app bound to a loopback interface. ``production`` and
development on any other interface refuse to start without a real key; ``test`` (the test suite's own stacks)
generates a random key once per data directory when none is given, and refuses the published one.
"""

import hashlib
import hmac
import ipaddress
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
MIN_SECRET_KEY_LENGTH = 32
TEST_SECRET_FILE = "test-secret-key"
_KEY_HINT = "set a long random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEEDLECARE_",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # never echo a secret
    )

    env: Literal["development", "production", "test"] = Field(
        default="development",
        description="development enables the mail capture, /outbox (loopback only) and the demo clinic, and is "
        "the only environment that accepts the published development SECRET_KEY (loopback only); test and "
        "production refuse it.",
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
    patient_sms_url: str | None = Field(
        default=None,
        description="Apprise URL (without the recipient) of the SMS provider for patient text messages, e.g. "
        "twilio://SID:TOKEN@+15551234567 or json://gateway.example/sms; a clinic's own sms_url overrides it. "
        "Default: the local SMS gateway in development (SMS_GATEWAY_PORT) and no SMS elsewhere (check-ins go "
        "by email only).",
    )
    sms_gateway_host: str = Field(default="127.0.0.1", description="Local SMS gateway (development).")
    sms_gateway_port: int = Field(default=1026, description="Port of the local SMS gateway `make run` starts.")
    sms_inbound_token: SecretStr | None = Field(
        default=None,
        description="Token the SMS provider's inbound webhook must send (?token= or X-Needlecare-Token header) "
        "to /api/v1/sms/inbound. Unset: the endpoint refuses every post (503), except in development on loopback, "
        "where the local gateway uses a token derived from SECRET_KEY.",
    )
    sms_default_region: str = Field(
        default="GB",
        pattern=r"^[A-Z]{2}$",
        description="Country used to read a phone number without a '+' prefix when the clinic has no region.",
    )
    sender_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Messages one outbox pass sends at once (a bounded pool of senders). Default: 8 on PostgreSQL; "
        "1 on SQLite, whose database-wide write lock made 8 senders slower than one (bench/README.md, dispatcher).",
    )
    route_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description="Most messages one process hands to a provider at once, by the host of its URL, as JSON: "
        '{"smtp.example.org": 2}. Routes not named get ROUTE_CONCURRENCY_DEFAULT.',
    )
    route_concurrency_default: int = Field(
        default=4, ge=1, le=64, description="Most messages one process hands at once to a provider not named above."
    )
    smtp_reuse_messages: int = Field(
        default=100,
        ge=0,
        description="Messages one sender sends over one SMTP connection before opening a new one (0: one "
        "connection per message). A kept connection must answer NOOP before it is used again.",
    )
    smtp_reuse_idle_seconds: float = Field(
        default=20, ge=0, description="A kept SMTP connection unused for longer than this is closed, not reused."
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_KEY),
        description="Signs survey and unsubscribe links, staff sessions and CSRF tokens. At least 32 characters; "
        "must be set unless NEEDLECARE_ENV=development with WEB_HOST on loopback (test: generated once into "
        "<data_dir>/test-secret-key when unset).",
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-clinic webhook secrets that override the database, as JSON: {"riverside-physio": "..."}',
    )
    webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="A signed event whose t= timestamp is further than this from the server's clock (either way) "
        "is refused as a possible replay (401).",
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
    # Rate limits (needlecare.web.ratelimit): token buckets in the application database, shared by web workers.
    # "burst" requests at once, refilled at "rate" per second; over that, 429 with Retry-After.
    rate_limits: bool = Field(default=True, description="Answer 429 past the limits below; false: no limit.")
    webhook_rate: float = Field(
        default=100, gt=0, description="Webhook events per second per clinic and sending address (sustained)."
    )
    webhook_burst: int = Field(default=1000, ge=1, description="Webhook events at once per clinic and address.")
    survey_token_rate: float = Field(default=0.2, gt=0, description="Answers per second to one survey link.")
    survey_token_burst: int = Field(default=10, ge=1, description="Answers at once to one survey link.")
    survey_client_rate: float = Field(default=2, gt=0, description="Survey answers per second per client address.")
    survey_client_burst: int = Field(default=120, ge=1, description="Survey answers at once per client address.")
    login_client_rate: float = Field(default=0.2, gt=0, description="Login attempts per second per client address.")
    login_client_burst: int = Field(default=20, ge=1, description="Login attempts at once per client address.")
    login_free_failures: int = Field(
        default=5, ge=1, description="Failed logins of one email before each further attempt waits (growing delay)."
    )
    login_delay_seconds: float = Field(
        default=1, gt=0, description="First wait after the free failures; doubles with each further failure."
    )
    login_delay_max_seconds: float = Field(
        default=300, gt=0, description="Longest wait between two login attempts for one email (never a lockout)."
    )
    login_hash_concurrency: int = Field(
        default=4, ge=1, description="Password checks (16 MiB scrypt each) at once per web process; more wait."
    )
    login_hash_wait_seconds: float = Field(
        default=10, ge=0, description="How long a login waits for a free password check before a 503 with Retry-After."
    )
    pdf_concurrency: int = Field(
        default=2, ge=1, description="PDF exports (one headless Chromium each) at once per web process."
    )
    pdf_queue_seconds: float = Field(
        default=20, ge=0, description="How long a PDF export waits for a free printer before a 503 with Retry-After."
    )
    dashboard_custom_snapshots: int = Field(
        default=50,
        ge=1,
        description="Stored dashboard snapshots per clinic besides today's preset periods (custom periods, older "
        "presets); the least recently computed beyond this are deleted.",
    )

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> "Settings":
        if not self.accepts_development_key:
            key = self.secret_key.get_secret_value()
            if self.env == "test" and "secret_key" not in self.model_fields_set and key == DEV_SECRET_KEY:
                self.secret_key = SecretStr(_test_secret(self.data_dir))
            elif key == DEV_SECRET_KEY:
                raise ValueError(
                    f"NEEDLECARE_SECRET_KEY is the published development default, accepted only with "
                    f"NEEDLECARE_ENV=development and NEEDLECARE_WEB_HOST on loopback (here: env={self.env}, "
                    f"web_host={self.web_host}); {_KEY_HINT}"
                )
            elif len(key) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(
                    f"NEEDLECARE_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters unless "
                    f"NEEDLECARE_ENV=development on loopback (here: env={self.env}, web_host={self.web_host}); "
                    f"{_KEY_HINT}"
                )
        if self.env == "production" and self.patient_email_url is None:
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
    def resolved_sender_concurrency(self) -> int:
        if self.sender_concurrency is not None:
            return self.sender_concurrency
        return 1 if self.resolved_database_url.startswith("sqlite") else 8

    @property
    def resolved_receipts_dir(self) -> Path:
        return self.receipts_dir or self.data_dir / "receipts"

    @property
    def resolved_patient_email_url(self) -> str:
        if self.patient_email_url:
            return self.patient_email_url
        return f"mailto://{self.smtp_capture_host}:{self.smtp_capture_port}?mode=insecure&from={self.mail_from}"

    @property
    def resolved_patient_sms_url(self) -> str | None:
        """The SMS route (an Apprise URL without the recipient): PATIENT_SMS_URL, else the local SMS gateway in
        development (the recipient goes in the JSON it posts, at ``{to}``), else None: no SMS is sent."""
        if self.patient_sms_url:
            return self.patient_sms_url
        if self.is_development:
            return f"json://{self.sms_gateway_host}:{self.sms_gateway_port}/sms?:to={{to}}"
        return None

    @property
    def resolved_sms_inbound_token(self) -> str | None:
        """The token /api/v1/sms/inbound requires: SMS_INBOUND_TOKEN, else in development on loopback one derived
        from SECRET_KEY (so the local SMS gateway, given the same settings, knows it), else None: refuse all."""
        if self.sms_inbound_token is not None and self.sms_inbound_token.get_secret_value():
            return self.sms_inbound_token.get_secret_value()
        if not self.accepts_development_key:
            return None
        key = self.secret_key.get_secret_value().encode()
        return hmac.new(key, b"needlecare sms inbound token", hashlib.sha256).hexdigest()[:40]

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def on_loopback(self) -> bool:
        """True when the web app binds only to a loopback interface (127.0.0.0/8, ::1, localhost)."""
        host = self.web_host.strip().strip("[]").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def accepts_development_key(self) -> bool:
        return self.is_development and self.on_loopback

    @property
    def serves_outbox(self) -> bool:
        """/outbox lists patients' addresses and live links: development on loopback only."""
        return self.is_development and self.on_loopback

    @property
    def serves_api_docs(self) -> bool:
        """/docs and /redoc load Swagger UI and ReDoc from a CDN: never in production."""
        return self.env != "production"

    @property
    def https(self) -> bool:
        return self.public_base_url.lower().startswith("https://")


def _test_secret(data_dir: Path) -> str:
    """The test environment's key: random, made once per data directory and shared by every process using it."""
    path = data_dir / TEST_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        staging = data_dir / f".{TEST_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            os.link(staging, path)  # atomic: the first process to get here wins, the others read its key
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
