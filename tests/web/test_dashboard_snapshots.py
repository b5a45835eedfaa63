"""The dashboard reads stored snapshots (needlecare.outcomes.store), on SQLite and PostgreSQL: a stored snapshot is
served without computing, a missing one gives the self-refreshing "computing" page and then the figures, a stale
one is served and replaced in the background, a failed computation gives an error page once, and the preset
periods precomputed by the CLI / flow are served from the store.

The cohort is tests/web/test_dashboard.py's ``build``: 47 paired 6-week Achilles answers over all time.
"""

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from models import Clinic, ReportSnapshot
from models.base import utcnow
from needlecare.cli.main import app as cli
from needlecare.core.settings import Settings, get_settings
from needlecare.outcomes import store as report_store
from needlecare.outcomes.periods import PERIODS, preset_since
from needlecare.staff import auth
from needlecare.web.app import create_app
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache
from tests.outcome_rows import T0, OutcomeRows
from tests.web.test_dashboard import ACHILLES, EMAIL, PASSWORD, PFPS, answered_episodes, build, login, overview_cell

ALL_TIME = report_store.view_key(None, None, None, None)
runner = CliRunner()


@pytest.fixture
def web(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    """A logged-in client whose pages never wait for a computation (wait budget 0)."""
    auth.create_user(db, clinic.id, EMAIL, "Dana Reyes", PASSWORD)
    app = create_app(settings)
    setattr(app.state, WAIT_STATE, 0.0)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        login(c)
        yield c
        report_cache(app).wait()


def cache_of(client: TestClient) -> Any:
    assert isinstance(client.app, FastAPI)
    return report_cache(client.app)


def no_computing(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """From here on a computation of figures fails (also in a background thread): returns the list of attempts."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append((args, kwargs))
        raise AssertionError("the page computed figures instead of reading the stored snapshot")

    monkeypatch.setattr(report_store, "compute", refuse)
    return attempts


def store(db: Session, clinic_id: str, key: str = ALL_TIME, *, age: timedelta = timedelta(0), **filters: Any) -> None:
    data, seconds = report_store.compute(db, clinic_id, **filters)
    assert report_store.put(db, clinic_id, key, data, seconds, computed_at=utcnow() - age)


def pain_n(html: str) -> str:
    return overview_cell(html, ACHILLES, "pain_change")


def test_a_stored_snapshot_is_served_without_computing(
    web: TestClient, db: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = build(db, clinic.id)
    store(db, clinic.id)  # 47 paired answers
    rows = OutcomeRows(db, clinic.id)
    answered_episodes(rows, 11, injury=ACHILLES, follow_up=3, practitioner=cohort.practitioner_b, start=T0)
    rows.commit()  # computing now would give 58
    attempts = no_computing(monkeypatch)
    page = web.get("/dashboard")
    assert page.status_code == 200, page.text
    assert "n = 47" in pain_n(page.text) and 'id="computed"' in page.text
    # an injury's pages read their figures out of the all-injuries snapshot
    assert "n = 47" in pain_n(web.get(f"/dashboard?injury={ACHILLES}").text)
    assert f'data-injury="{PFPS}"' not in web.get(f"/dashboard?injury={ACHILLES}").text
    charts: list[str] = []
    import needlecare.outcomes.charts

    real = needlecare.outcomes.charts.trajectory_svg

    def counted(*args: Any, **kwargs: Any) -> str:
        charts.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(needlecare.outcomes.charts, "trajectory_svg", counted)
    for _ in range(2):
        injury = web.get(f"/dashboard/injury/{ACHILLES}")
        assert injury.status_code == 200 and '<figure class="chart" id="trajectory-chart"><svg' in injury.text
        assert "n = 47" in injury.text
    assert charts == [ACHILLES], "the chart is drawn once per snapshot"
    cache_of(web).wait()
    assert attempts == [], "a fresh snapshot starts no computation"


def test_a_missing_snapshot_shows_the_computing_page_then_the_figures(
    web: TestClient, db: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(db, clinic.id, start=utcnow() - timedelta(days=300))  # all 47 inside "last 12 months", whatever the date
    gate = threading.Event()
    real = report_store.compute

    def held(*args: Any, **kwargs: Any) -> Any:
        assert gate.wait(30), "the test never released the computation"
        return real(*args, **kwargs)

    monkeypatch.setattr(report_store, "compute", held)
    page = web.get(f"/dashboard?injury={ACHILLES}&period=12m")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert '<meta http-equiv="refresh" content="5">' in page.text
    assert "Computing these figures" in page.text and "<script" not in page.text.lower()
    assert "Achilles tendinopathy" in page.text and "last 12 months" in page.text, "it says which filters"
    assert 'href="/dashboard"' in page.text and 'href="/cases"' in page.text, "the staff navigation is there"
    again = web.get(f"/dashboard?injury={ACHILLES}&period=12m")
    assert "Computing these figures" in again.text, "still computing: the same single job"
    gate.set()
    cache_of(web).wait()
    since = preset_since("12m", clinic.timezone, utcnow())
    assert report_store.stamp(db, clinic.id, report_store.view_key(ACHILLES, None, since, None)) is not None
    done = web.get(f"/dashboard?injury={ACHILLES}&period=12m")
    assert done.status_code == 200 and "Computing" not in done.text
    assert "n = 47" in pain_n(done.text)


def test_a_stale_snapshot_is_served_and_replaced_in_the_background(
    web: TestClient, db: Session, clinic: Clinic
) -> None:
    cohort = build(db, clinic.id)
    store(db, clinic.id, age=timedelta(hours=1))
    before = report_store.stamp(db, clinic.id, ALL_TIME)
    assert before is not None
    rows = OutcomeRows(db, clinic.id)
    answered_episodes(rows, 11, injury=ACHILLES, follow_up=3, practitioner=cohort.practitioner_b, start=T0)
    rows.commit()
    stale = web.get("/dashboard")
    assert stale.status_code == 200 and "n = 47" in pain_n(stale.text), "served at once from the stale snapshot"
    cache_of(web).wait()
    after = report_store.stamp(db, clinic.id, ALL_TIME)
    assert after is not None and after.computed_at > before.computed_at
    assert "n = 58" in pain_n(web.get("/dashboard").text)


def test_downloads_use_a_fresh_snapshot_or_compute_one(
    web: TestClient, db: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = build(db, clinic.id)
    store(db, clinic.id, age=timedelta(hours=1))  # 47, stale
    rows = OutcomeRows(db, clinic.id)
    answered_episodes(rows, 11, injury=ACHILLES, follow_up=3, practitioner=cohort.practitioner_b, start=T0)
    rows.commit()
    line = ",pain_change,outcome_6wk,nprs_usual,n_paired,count,{},"
    exported = web.get("/dashboard/export.csv")
    assert exported.status_code == 200 and line.format(58) in exported.text, "a stale snapshot is recomputed"
    fresh = report_store.stamp(db, clinic.id, ALL_TIME)
    assert fresh is not None and utcnow() - fresh.computed_at < timedelta(minutes=1), "and stored"
    no_computing(monkeypatch)
    assert line.format(58) in web.get("/dashboard/export.csv").text, "the fresh snapshot is used"


def test_a_failed_computation_shows_an_error_page_once_then_tries_again(
    web: TestClient, db: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    build(db, clinic.id)
    real = report_store.compute
    gate = threading.Event()
    gate.set()

    def broken(*args: Any, **kwargs: Any) -> Any:
        assert gate.wait(30), "the test never released the computation"
        raise RuntimeError("details that must not be logged")

    monkeypatch.setattr(report_store, "compute", broken)
    gate.clear()  # fails only after the page answered "computing"
    with caplog.at_level(logging.ERROR, logger="needlecare.web.dashboard.snapshots"):
        assert "Computing these figures" in web.get("/dashboard").text
        gate.set()
        cache_of(web).wait()
    failed = web.get("/dashboard")
    assert failed.status_code == 503 and failed.headers["cache-control"] == "no-store"
    assert "These figures could not be computed" in failed.text and 'id="retry"' in failed.text
    assert "http-equiv" not in failed.text, "no endless reloading"
    assert f"clinic {clinic.id}" in caplog.text and ALL_TIME in caplog.text and "RuntimeError" in caplog.text
    assert "details that must not be logged" not in caplog.text
    monkeypatch.setattr(report_store, "compute", real)
    assert "Computing these figures" in web.get("/dashboard").text, "the next page tries again"
    cache_of(web).wait()
    assert "n = 47" in pain_n(web.get("/dashboard").text)
    # with a wait budget, a computation that fails within it shows the error page at once
    assert isinstance(web.app, FastAPI)
    setattr(web.app.state, WAIT_STATE, 30.0)
    monkeypatch.setattr(report_store, "compute", broken)
    assert web.get("/dashboard?period=30d").status_code == 503
    monkeypatch.setattr(report_store, "compute", real)
    retried = web.get("/dashboard?period=30d")
    assert retried.status_code == 200 and 'id="computed"' in retried.text, "the next page tries again"


def test_a_snapshot_that_does_not_decode_counts_as_missing(
    web: TestClient, db: Session, clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    build(db, clinic.id)
    db.add(ReportSnapshot(clinic_id=clinic.id, view_key=ALL_TIME, computed_at=utcnow(), seconds=1.0, data='{"x":1}'))
    db.commit()
    with caplog.at_level(logging.WARNING, logger="needlecare.outcomes.store"):
        page = web.get("/dashboard")
    assert page.status_code == 200 and "Computing these figures" in page.text
    assert f"clinic {clinic.id}, view {ALL_TIME} does not decode" in caplog.text
    cache_of(web).wait()
    assert "n = 47" in pain_n(web.get("/dashboard").text), "replaced by the computation"


def test_the_cli_precomputes_every_preset_period_and_the_pages_read_them(
    web: TestClient,
    db: Session,
    clinic: Clinic,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build(db, clinic.id)
    monkeypatch.setenv("NEEDLECARE_DATABASE_URL", db_url)
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = runner.invoke(cli, ["dashboard", "refresh", "--clinic", clinic.id])
        unknown = runner.invoke(cli, ["dashboard", "refresh", "--clinic", "nowhere"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{clinic.id}: 4 view(s)"
    for period, line in zip(PERIODS, lines[1:5], strict=True):
        assert line.split()[0] == period and line.endswith(" s") and "…" in line, line
    assert "stored 4 of 4 view(s) for 1 clinic(s)" in lines[5]
    assert unknown.exit_code == 2 and f"unknown clinic 'nowhere'; known clinics: {clinic.id}" in unknown.stderr
    attempts = no_computing(monkeypatch)
    for period in PERIODS:
        page = web.get(f"/dashboard?period={period}")
        assert page.status_code == 200 and "Computing" not in page.text, period
        assert 'id="computed"' in page.text, period
        assert web.get(f"/dashboard/injury/{ACHILLES}?period={period}").status_code == 200
    assert "n = 47" in pain_n(web.get("/dashboard?period=all").text)
    cache_of(web).wait()
    assert attempts == [], "every preset period was read from the store"


def test_a_snapshot_stored_by_the_previous_version_is_recomputed_with_the_headline(
    web: TestClient, db: Session, clinic: Clinic
) -> None:
    """Format 1 had no headline: such a snapshot reads as missing, and the page computes the figures afresh."""
    build(db, clinic.id)
    data, seconds = report_store.compute(db, clinic.id)
    document = json.loads(report_store.encode(data))
    assert document["format"] == report_store.FORMAT_VERSION == 4
    without_channels = {"format": 3, "report": {k: v for k, v in document["report"].items() if k != "channels"}}
    with pytest.raises(report_store.UnreadableSnapshot):  # version 3 had no channels: it is recomputed, not shown bare
        report_store.decode(json.dumps(without_channels))
    del document["report"]["outcomes"]["headline"]
    document["format"] = 1
    old = json.dumps(document)
    db.add(ReportSnapshot(clinic_id=clinic.id, view_key=ALL_TIME, computed_at=utcnow(), seconds=seconds, data=old))
    db.commit()
    assert report_store.get(db, clinic.id, ALL_TIME) is None, "an older format reads as missing"
    document["format"] = 2
    with pytest.raises(report_store.UnreadableSnapshot):  # and the old shape would not decode as the new one
        report_store.decode(json.dumps(document))
    assert "Computing these figures" in web.get("/dashboard").text
    cache_of(web).wait()
    page = web.get("/dashboard").text
    assert 'id="headline"' in page and "(40 of 52)" in page and "n = 47" in pain_n(page)
    stored = report_store.get(db, clinic.id, ALL_TIME)
    assert stored is not None and stored.data.outcomes.headline.raw.paired == 52
