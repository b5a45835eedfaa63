"""A final delivery failure is seen: the clinic's backup route gets an operational alert (no patient data),
and the staff page lists the message with who to contact — a patient message refused by a real SMTP server."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from models import Alert, Clinic, Notification
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import _Handler
from needlecare.followup import outbox
from needlecare.intake import ingest
from needlecare.safety import alerts
from needlecare.safety.clinic_config import parse_config, to_stored
from needlecare.staff import auth
from needlecare.web.app import create_app
from tests.conftest import free_port
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE, event_body
from tests.webhook import Webhook, webhook

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class _Refuse(_Handler):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 5.1.1 mailbox unavailable"


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook() as h:
        yield h


def _route(db: Session, clinic: Clinic, routes: list[dict[str, Any]]) -> None:
    clinic.config = to_stored(parse_config({"alerts": routes}))
    db.add(clinic)
    db.commit()


def _staff_page(settings: Settings, db: Session, clinic: Clinic) -> str:
    auth.create_user(db, clinic.id, "dana@riverside.example", "Dana Reyes", PASSWORD)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        token = CSRF.search(client.get("/login").text)
        assert token
        done = client.post(
            "/login",
            data={"email": "dana@riverside.example", "password": PASSWORD, "csrf": token.group(1), "next": "/"},
        )
        assert done.status_code == 303
        page = client.get("/undelivered")
        assert page.status_code == 200
        return page.text


def test_a_refused_patient_message_alerts_the_backup_route_and_is_listed(
    db: Session, clinic: Clinic, settings: Settings, hook: Webhook, tmp_path: Path
) -> None:
    _route(db, clinic, [{"url": hook.url, "tags": ["emergency", "same_day", "next_bd", "backup"]}])
    port = free_port()
    server = Controller(_Refuse(tmp_path), hostname="127.0.0.1", port=port)
    server.start()
    settings = settings.model_copy(update={"patient_email_url": f"mailto://127.0.0.1:{port}?from=a@clinic.example"})
    ingest.record(db, ingest.validate(event_body(1)), actor="test")
    try:
        assert outbox.run_pass(db, now=utcnow(), settings=settings).failed == 1
    finally:
        server.stop()
    [n] = db.exec(select(Notification)).all()
    [queued] = db.exec(select(Alert)).all()
    assert queued.audience == "undelivered" and queued.notification_id == n.id and queued.case_id is None

    assert alerts.send_due(db, now=utcnow(), settings=settings).sent == 1
    assert alerts.send_due(db, now=utcnow(), settings=settings).claimed == 0
    [post] = hook.posts
    text = str(post["body"])
    assert "Undelivered patient message" in text and f"#{n.id}" in text and "550" in text
    for private in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE):
        assert private not in text

    page = _staff_page(settings, db, clinic)
    assert f'data-id="{n.id}"' in page and "The aftercare notice" in page
    assert PATIENT_NAME in page and PATIENT_EMAIL in page  # staff need to reach the patient another way
