"""The web app with its PostgreSQL database stopped for real: 503 with Retry-After, nothing half-stored, no
patient data in any log line, and the clinic's retry of the same event accepted once the database is back."""

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import TreatmentSession
from needlecare.core import db as database
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.core.signing import sign
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET, add_test_clinic, free_port
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE, event_body
from tests.pg import PgCluster

URL = "/api/v1/events/session-completed"

pytestmark = pytest.mark.faults


@pytest.fixture
def outage_url(own_cluster: PgCluster) -> Iterator[str]:
    url = own_cluster.url(own_cluster.create_database())
    database.upgrade(url)
    with Session(database.get_engine(url)) as db:
        add_test_clinic(db)
    yield url
    database.get_engine(url).dispose()


def _post(client: TestClient, body: dict[str, object]) -> object:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Needlecare-Signature": sign(raw, CLINIC_SECRET)}
    return client.post(URL, content=raw, headers=headers)


def test_stopped_database_answers_503_and_the_retry_lands_once(
    own_cluster: PgCluster,
    outage_url: str,
    tmp_path: Path,
    emitted: list[events.AppEvent],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(env="test", data_dir=tmp_path, database_url=outage_url, smtp_capture_port=free_port())
    # raise_server_exceptions=True: an exception escaping the app would reach the server (and its traceback the
    # server's log); the app must answer instead.
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        warm = _post(client, event_body(external_session_id="S-WARM"))
        assert warm.status_code == 202  # type: ignore[attr-defined]

        own_cluster.pause()
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            down = _post(client, event_body(external_session_id="S-OUTAGE"))
            page = client.get("/s/not-a-token", headers={"Accept": "text/html"})
        assert down.status_code == 503  # type: ignore[attr-defined]
        assert int(down.headers["Retry-After"]) > 0  # type: ignore[attr-defined]
        assert "nothing was stored" in down.json()["detail"]  # type: ignore[attr-defined]
        assert page.status_code in (404, 410, 503)  # a bad link needs no database; either way no 500
        logged = caplog.text + "".join(capfd.readouterr())
        assert "database unavailable" in logged
        for private in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE):
            assert private not in logged

        own_cluster.resume()
        retried = _post(client, event_body(external_session_id="S-OUTAGE"))
        assert retried.status_code == 202  # type: ignore[attr-defined]
        again = _post(client, event_body(external_session_id="S-OUTAGE"))
        assert again.status_code == 200 and again.json()["status"] == "duplicate"  # type: ignore[attr-defined]

    with Session(database.get_engine(outage_url)) as db:
        stored = db.exec(
            select(func.count()).select_from(TreatmentSession).where(TreatmentSession.external_session_id == "S-OUTAGE")
        ).one()
    assert stored == 1
    assert len(emitted) == 2  # the warm-up session and the retried one, each once
