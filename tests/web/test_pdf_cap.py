"""Bounded expensive work on the dashboard, on SQLite and PostgreSQL: at most ``pdf_concurrency`` PDF exports print
at once (a further one waits, then gets a 503 with Retry-After), and custom periods do not leave a stored
snapshot per request."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select

from models import Clinic, ReportSnapshot
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.outcomes import report_pdf
from needlecare.outcomes import store as report_store
from needlecare.staff import auth
from needlecare.web.app import create_app
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache
from needlecare.web.ratelimit import slots
from tests.web.test_dashboard import EMAIL, PASSWORD, login

needs_chromium = pytest.mark.skipif(not report_pdf.chromium_available(), reason="no Chromium to print the PDF with")


def logged_in(app: FastAPI) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    client.__enter__()
    login(client)
    return client


@pytest.fixture
def app_for(settings: Settings, clinic: Clinic, db: Session) -> Iterator[dict[str, FastAPI]]:
    auth.create_user(db, clinic.id, EMAIL, "Dana Reyes", PASSWORD)
    made: dict[str, FastAPI] = {}
    yield made
    for app in made.values():
        report_cache(app).wait()


def make(settings: Settings, made: dict[str, FastAPI], **changes: object) -> FastAPI:
    app = create_app(settings.model_copy(update=changes))
    setattr(app.state, WAIT_STATE, 60.0)
    made[str(len(made))] = app
    return app


def test_a_pdf_export_past_the_cap_gets_a_503_with_retry_after(settings: Settings, app_for: dict[str, FastAPI]) -> None:
    app = make(settings, app_for, pdf_concurrency=1, pdf_queue_seconds=0)
    client = logged_in(app)
    printers = slots(app, "pdf", 1)
    assert printers.take(0)  # another export is printing
    try:
        busy = client.get("/dashboard/export.pdf")
    finally:
        printers.give_back()
    client.__exit__(None, None, None)
    if not report_pdf.chromium_available():
        assert busy.status_code == 503  # no printer at all: the existing 503 page
        return
    assert busy.status_code == 503 and busy.headers["retry-after"] == "30"
    assert "Other PDF reports are being printed right now" in busy.text
    assert "apt-get install chromium" not in busy.text  # nothing for the operator to install
    assert printers.busy == 0


@needs_chromium
def test_parallel_pdf_exports_print_at_most_the_cap_at_once(settings: Settings, app_for: dict[str, FastAPI]) -> None:
    app = make(settings, app_for, pdf_concurrency=1, pdf_queue_seconds=120)
    clients = [logged_in(app) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda c: c.get("/dashboard/export.pdf"), clients))
    for client in clients:
        client.__exit__(None, None, None)
    assert [r.status_code for r in responses] == [200, 200, 200]  # the others waited for the printer
    assert all(r.content.startswith(b"%PDF") for r in responses)
    printers = slots(app, "pdf", 1)
    assert printers.peak == 1 and printers.busy == 0


def test_custom_periods_keep_a_bounded_number_of_snapshots(
    settings: Settings, app_for: dict[str, FastAPI], db: Session, clinic: Clinic
) -> None:
    app = make(settings, app_for, dashboard_custom_snapshots=2)
    client = logged_in(app)
    start = date(2026, 1, 1)
    for day in range(5):
        since = (start + timedelta(days=day)).isoformat()
        assert client.get("/dashboard", params={"since": since, "until": "2026-06-30"}).status_code == 200
        report_cache(app).wait()
    assert client.get("/dashboard/export.csv", params={"since": "2026-02-01"}).status_code == 200
    client.__exit__(None, None, None)
    keep = [v.key for v in report_store.standard_views(clinic, utcnow())]
    db.expire_all()
    others = db.exec(
        select(ReportSnapshot.view_key).where(
            ReportSnapshot.clinic_id == clinic.id, col(ReportSnapshot.view_key).not_in(keep)
        )
    ).all()
    assert len(others) == 2
    assert any("since=2026-02-01" in key for key in others)  # the newest stay
    assert db.exec(select(func.count()).select_from(ReportSnapshot)).one() <= 2 + len(keep)


def test_trim_keeps_the_named_views_and_the_newest_others(db: Session, clinic: Clinic) -> None:
    data, seconds = report_store.compute(db, clinic.id)
    now = utcnow()
    for n in range(4):
        report_store.put(db, clinic.id, f"custom-{n}", data, seconds, computed_at=now + timedelta(seconds=n))
    report_store.put(db, clinic.id, "standard", data, seconds, computed_at=now - timedelta(days=1))
    assert report_store.trim(db, clinic.id, ["standard"], 1) == 3
    db.expire_all()
    keys = set(db.exec(select(ReportSnapshot.view_key)).all())
    assert keys == {"standard", "custom-3"}
