import pytest
from pydantic import SecretStr, ValidationError

from needlecare.core.settings import Settings


def test_production_refuses_the_default_secret_key() -> None:
    with pytest.raises(ValidationError, match="NEEDLECARE_SECRET_KEY is the development default"):
        Settings(env="production", patient_email_url="mailtos://u:p@smtp.example.org")


def test_production_refuses_a_short_secret_key() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(env="production", secret_key=SecretStr("short"), patient_email_url="mailto://x")


def test_production_needs_a_real_mail_url() -> None:
    with pytest.raises(ValidationError, match="NEEDLECARE_PATIENT_EMAIL_URL"):
        Settings(env="production", secret_key=SecretStr("x" * 40))


def test_production_with_real_values_starts() -> None:
    s = Settings(env="production", secret_key=SecretStr("x" * 40), patient_email_url="mailtos://u:p@h")
    assert not s.is_development


def test_defaults_point_at_local_embedded_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("NEEDLECARE_DATABASE_URL", "NEEDLECARE_DATA_DIR", "NEEDLECARE_SMTP_CAPTURE_PORT"):
        monkeypatch.delenv(key, raising=False)
    s = Settings()
    assert s.resolved_database_url == "sqlite:///var/needlecare.db"
    assert s.resolved_patient_email_url.startswith("mailto://127.0.0.1:1025")
    assert s.web_port == 8000 and s.prefect_port == 4200


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEEDLECARE_WEB_PORT", "8123")
    monkeypatch.setenv("NEEDLECARE_WEBHOOK_SECRETS", '{"riverside-physio": "from-vault"}')
    s = Settings()
    assert s.web_port == 8123
    assert s.webhook_secrets["riverside-physio"].get_secret_value() == "from-vault"
