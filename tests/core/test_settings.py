import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlmodel import Session

from models import Clinic, Patient
from needlecare.core.settings import DEV_SECRET_KEY, TEST_SECRET_FILE, Settings
from needlecare.core.tokens import make_token
from needlecare.followup.unsubscribe import make_unsubscribe_token
from needlecare.web.app import create_app
from tests.records import make_contact, make_session

GOOD_KEY = SecretStr("k" * 40)


def test_production_refuses_the_default_secret_key() -> None:
    with pytest.raises(ValidationError, match="NEEDLECARE_SECRET_KEY is the published development default"):
        Settings(env="production", patient_email_url="mailtos://u:p@smtp.example.org")


def test_production_refuses_a_short_secret_key() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(env="production", secret_key=SecretStr("short"), patient_email_url="mailto://x")


def test_production_needs_a_real_mail_url() -> None:
    with pytest.raises(ValidationError, match="NEEDLECARE_PATIENT_EMAIL_URL"):
        Settings(env="production", secret_key=SecretStr("x" * 40))


def test_production_with_real_values_starts() -> None:
    s = Settings(env="production", secret_key=SecretStr("x" * 40), patient_email_url="mailtos://u:p@h")
    assert not s.is_development and not s.serves_outbox and not s.serves_api_docs


@pytest.mark.parametrize("key", [DEV_SECRET_KEY, "short-but-not-the-default"])
def test_the_test_environment_refuses_the_published_or_a_short_key(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="NEEDLECARE_SECRET_KEY") as caught:
        Settings(env="test", data_dir=tmp_path, secret_key=SecretStr(key))
    assert key not in str(caught.value), "the refused key is never echoed"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "needlecare.example"])
def test_development_off_loopback_refuses_the_default_key(host: str) -> None:
    with pytest.raises(ValidationError, match="NEEDLECARE_WEB_HOST on loopback"):
        Settings(env="development", web_host=host)
    s = Settings(env="development", web_host=host, secret_key=GOOD_KEY)
    assert not s.serves_outbox, "/outbox never faces a network"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_development_on_loopback_keeps_the_default_key_for_make_run(host: str) -> None:
    s = Settings(env="development", web_host=host)
    assert s.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert s.serves_outbox and s.serves_api_docs


def test_the_test_environment_makes_one_random_key_per_data_directory(tmp_path: Path) -> None:
    first = Settings(env="test", data_dir=tmp_path / "a")
    again = Settings(env="test", data_dir=tmp_path / "a")
    other = Settings(env="test", data_dir=tmp_path / "b")
    key = first.secret_key.get_secret_value()
    assert key != DEV_SECRET_KEY and len(key) >= 32
    assert again.secret_key.get_secret_value() == key, "every process on one data directory shares it"
    assert other.secret_key.get_secret_value() != key
    assert stat.S_IMODE((tmp_path / "a" / TEST_SECRET_FILE).stat().st_mode) == 0o600
    assert not first.serves_outbox


def test_defaults_point_at_local_embedded_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("NEEDLECARE_DATABASE_URL", "NEEDLECARE_DATA_DIR", "NEEDLECARE_SMTP_CAPTURE_PORT"):
        monkeypatch.delenv(key, raising=False)
    s = Settings()
    assert s.resolved_database_url == "sqlite:///var/needlecare.db"
    assert s.resolved_patient_email_url.startswith("mailto://127.0.0.1:1025")
    assert s.web_port == 8000 and s.prefect_port == 4200
    assert s.webhook_tolerance_seconds == 300


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEEDLECARE_WEB_PORT", "8123")
    monkeypatch.setenv("NEEDLECARE_WEBHOOK_SECRETS", '{"riverside-physio": "from-vault"}')
    s = Settings()
    assert s.web_port == 8123
    assert s.webhook_secrets["riverside-physio"].get_secret_value() == "from-vault"


def _configurations(settings: Settings) -> dict[str, Settings]:
    """Every kind of non-development configuration, on the test's database."""
    common = {"data_dir": settings.data_dir, "database_url": settings.database_url}
    return {
        "test": Settings(env="test", **common),
        "test with a key": Settings(env="test", secret_key=GOOD_KEY, **common),
        "development on 0.0.0.0": Settings(env="development", web_host="0.0.0.0", secret_key=GOOD_KEY, **common),
        "production": Settings(
            env="production", secret_key=GOOD_KEY, patient_email_url="mailtos://u:p@smtp.example.org", **common
        ),
    }


def test_a_link_forged_with_the_development_key_is_refused_outside_development(
    settings: Settings, db: Session, clinic: Clinic
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    assert contact.id is not None
    survey = make_token(contact.id, contact.patient_id, "check_24h", contact.window_closes_at, DEV_SECRET_KEY)
    unsubscribe = make_unsubscribe_token(contact.patient_id, DEV_SECRET_KEY)
    development = Settings(env="development", data_dir=settings.data_dir, database_url=settings.database_url)
    with TestClient(create_app(development)) as dev:
        assert dev.get(f"/s/{survey}").status_code == 200, "the forged link is genuine to development"
        assert dev.get(f"/u/{unsubscribe}").status_code == 200
    for name, configuration in _configurations(settings).items():
        with TestClient(create_app(configuration)) as client:
            assert client.get(f"/s/{survey}").status_code == 404, name
            assert client.get(f"/u/{unsubscribe}").status_code == 404, name
            assert client.post(f"/u/{unsubscribe}").status_code == 404, name
            assert client.get("/outbox.json").status_code == 404, name
    db.expire_all()
    patient = db.get(Patient, contact.patient_id)
    assert patient is not None and patient.opted_out_at is None, "no forged unsubscribe took effect"
