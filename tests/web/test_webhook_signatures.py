"""Timestamped webhook signatures: replays refused, secrets rotated without a refused event, the old form kept
only for clinics registered before it was replaced."""

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from models import Clinic, TreatmentSession
from models.base import utcnow
from needlecare.cli.main import app as cli
from needlecare.core import db as database
from needlecare.core.settings import Settings, get_settings
from needlecare.core.signing import SIGNATURE_HEADER, sign_legacy
from needlecare.intake import clinics
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.factories import event_body
from tests.webhook import signed_headers

URL = "/api/v1/events/session-completed"
runner = CliRunner()


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def _post(client: TestClient, n: int, secret: str, *, timestamp: int | None = None) -> Any:
    raw = json.dumps(event_body(n)).encode()
    return client.post(URL, content=raw, headers=signed_headers(raw, secret, timestamp=timestamp))


def _stored(db: Session) -> int:
    db.expire_all()
    return db.exec(select(func.count()).select_from(TreatmentSession)).one()


def _cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("NEEDLECARE_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        return runner.invoke(cli, list(args))
    finally:
        get_settings.cache_clear()


def test_a_fresh_timestamped_signature_is_accepted(client: TestClient, db: Session) -> None:
    assert _post(client, 1, CLINIC_SECRET).status_code == 202
    assert _stored(db) == 1


def test_a_replay_older_than_the_tolerance_is_refused(client: TestClient, db: Session) -> None:
    raw = json.dumps(event_body(1)).encode()
    captured = signed_headers(raw, CLINIC_SECRET, timestamp=int(time.time()) - 301)
    refused = client.post(URL, content=raw, headers=captured)
    assert refused.status_code == 401
    assert "more than 300 s" in refused.json()["detail"]
    ahead = client.post(URL, content=raw, headers=signed_headers(raw, CLINIC_SECRET, timestamp=int(time.time()) + 400))
    assert ahead.status_code == 401, "a timestamp from the future is no better"
    assert _stored(db) == 0, "nothing stored"


def test_the_tolerance_is_a_setting(settings: Settings, clinic: Clinic, db: Session) -> None:
    with TestClient(create_app(settings.model_copy(update={"webhook_tolerance_seconds": 60}))) as client:
        assert _post(client, 1, CLINIC_SECRET, timestamp=int(time.time()) - 90).status_code == 401
        assert _post(client, 2, CLINIC_SECRET, timestamp=int(time.time()) - 30).status_code == 202


def test_rotation_refuses_no_event_and_finish_drops_the_old_secret(
    client: TestClient, db: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _cli(settings, monkeypatch, "clinic", "rotate-secret", "riverside-physio")
    assert started.exit_code == 0, started.output
    new = started.output.split("(shown once): ")[1].split()[0]
    assert new.startswith("whsec_") and new != CLINIC_SECRET
    # the clinic's system switches over whenever it is ready: events signed either way are accepted meanwhile
    assert [_post(client, n, secret).status_code for n, secret in enumerate([CLINIC_SECRET, new, CLINIC_SECRET])] == [
        202,
        202,
        202,
    ]
    again = _cli(settings, monkeypatch, "clinic", "rotate-secret", "riverside-physio")
    assert again.exit_code == 2 and "--finish" in again.output, "a second rotation would drop a live secret"
    finished = _cli(settings, monkeypatch, "clinic", "rotate-secret", "riverside-physio", "--finish")
    assert finished.exit_code == 0, finished.output
    assert _post(client, 10, CLINIC_SECRET).status_code == 401
    assert _post(client, 11, new).status_code == 202
    assert _stored(db) == 4
    assert (
        "rotation in progress"
        in _cli(settings, monkeypatch, "clinic", "rotate-secret", "riverside-physio", "--finish").output
    )


def test_the_old_secret_ends_at_the_time_set(db: Session, clinic: Clinic, settings: Settings) -> None:
    now = utcnow()
    rotation = clinics.rotate_secret(
        db, clinic.id, actor="test", now=now, previous_valid_until=now + timedelta(hours=2)
    )
    db.refresh(clinic)
    assert clinics.active_webhook_secrets(clinic, settings, now + timedelta(hours=1)) == [
        rotation.new_secret,
        CLINIC_SECRET,
    ]
    assert clinics.active_webhook_secrets(clinic, settings, now + timedelta(hours=2)) == [rotation.new_secret]
    # once the old one has ended, a new rotation may start without --finish
    later = clinics.rotate_secret(db, clinic.id, actor="test", now=now + timedelta(hours=3))
    assert clinics.active_webhook_secrets(clinic, settings, now + timedelta(hours=3)) == [
        later.new_secret,
        rotation.new_secret,
    ]


def test_rotating_an_unknown_clinic_says_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, clinic: Clinic
) -> None:
    result = _cli(settings, monkeypatch, "clinic", "rotate-secret", "nowhere-physio")
    assert result.exit_code == 2 and "no clinic 'nowhere-physio'" in result.output


def test_a_new_clinic_refuses_the_untimed_form(client: TestClient, db: Session) -> None:
    raw = json.dumps(event_body(1)).encode()
    refused = client.post(
        URL,
        content=raw,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign_legacy(raw, CLINIC_SECRET)},
    )
    assert refused.status_code == 401 and "t=<unix time>,v1=" in refused.json()["detail"]
    assert _stored(db) == 0


def test_an_existing_clinic_keeps_the_untimed_form_with_one_deprecation_note(
    client: TestClient, db: Session, clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    clinic.webhook_legacy_signatures = True
    db.add(clinic)
    db.commit()
    clinics._warned.discard(clinic.id)
    with caplog.at_level(logging.WARNING, logger="needlecare.intake.clinics"):
        for n in (1, 2):
            raw = json.dumps(event_body(n)).encode()
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_legacy(raw, CLINIC_SECRET)}
            assert client.post(URL, content=raw, headers=headers).status_code == 202
        bad = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_legacy(b"other", CLINIC_SECRET)}
        assert client.post(URL, content=json.dumps(event_body(3)).encode(), headers=bad).status_code == 401
        assert _post(client, 4, CLINIC_SECRET).status_code == 202, "the new form works for it too"
    notes = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(notes) == 1 and "riverside-physio" in notes[0].getMessage()


def test_clinics_registered_before_the_migration_keep_the_untimed_form(db_url: str) -> None:
    """Downgrade to the schema before timestamped signatures, add a clinic there, upgrade: it keeps sha256=."""
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.attributes["url"] = db_url
    command.downgrade(config, "0009")
    engine = database.get_engine(db_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO clinic (id, name, email, timezone, webhook_secret, created_at) "
                "VALUES ('old-physio', 'Old', 'old@physio.example', 'UTC', 'whsec_old', :at)"
            ),
            {"at": utcnow()},
        )
    database.upgrade(db_url)
    engine.dispose()
    with Session(database.get_engine(db_url)) as db:
        old = db.get(Clinic, "old-physio")
        assert old is not None and old.webhook_legacy_signatures
        assert old.webhook_secret_previous is None and old.webhook_secret_previous_until is None


def test_the_cli_signs_a_body_the_api_accepts(
    client: TestClient, db: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What `make run`'s banner tells a developer to run with curl."""
    body = tmp_path / "event.json"
    body.write_bytes(json.dumps(event_body(1)).encode())
    signed = _cli(settings, monkeypatch, "clinic", "sign", "riverside-physio", "--file", str(body))
    assert signed.exit_code == 0, signed.output
    header = signed.output.strip()
    assert header.startswith("t=") and ",v1=" in header
    sent = client.post(
        URL, content=body.read_bytes(), headers={"Content-Type": "application/json", SIGNATURE_HEADER: header}
    )
    assert sent.status_code == 202, sent.text
    assert _stored(db) == 1
