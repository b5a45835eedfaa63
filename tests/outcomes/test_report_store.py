"""Stored reports (needlecare.outcomes.store) on SQLite and PostgreSQL: an exact JSON round trip that keeps every
Figure's raw n (which the exports never print), upsert, prune, the canonical view keys and standard views, the
precomputing flow, the nightly flow's all-time snapshot and the deployment that runs the flow."""

import json
import logging
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.schedules import IntervalSchedule
from pydantic import BaseModel, TypeAdapter
from sqlmodel import Session, select

from models import Clinic, ClinicCreate, ReportSnapshot
from models.base import utcnow
from needlecare.core.settings import get_settings
from needlecare.intake.clinics import add_clinic
from needlecare.outcomes import report_csv, report_json, reports
from needlecare.outcomes import store as report_store
from needlecare.outcomes.periods import PERIODS
from needlecare.outcomes.suppression import Figure
from needlecare.web.dashboard.filters import read_filters
from tests.outcomes.test_reports import NOW, seed

ALL_TIME = "injury=*;practitioner=*;since=-;until=-"


def figures(value: Any) -> Iterator[Figure]:
    """Every Figure inside a report."""
    if isinstance(value, Figure):
        yield value
    elif isinstance(value, BaseModel):
        return
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from figures(getattr(value, f.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from figures(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from figures(item)


@pytest.fixture
def data(db: Session, clinic: Clinic) -> reports.ReportData:
    """tests/outcomes/test_reports.py's cohort: shown figures, complementary suppression and "< 11" cells."""
    seed(db)
    return reports.build_report(db, clinic.id, now=NOW)


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEEDLECARE_DATABASE_URL", db_url)
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


# ---- encoding -------------------------------------------------------------------------------------------------


def test_encode_decode_round_trip_keeps_every_figure_n(data: reports.ReportData) -> None:
    text = report_store.encode(data)
    back = report_store.decode(text)
    assert back == data
    before, after = list(figures(data)), list(figures(back))
    assert len(before) > 100 and [f.n for f in after] == [f.n for f in before]
    hidden_n = [f for f in before if f.n_shown is None and f.n > 0]
    assert hidden_n, "the cohort has figures whose n itself is suppressed"
    assert '"n":' in text, "the store keeps the raw n"
    assert TypeAdapter(reports.ReportData).dump_python(data)["outcomes"]["rows"][0]["contacts_due"].get("n") is None, (
        "pydantic's own serializer drops it (why report_store has its own encoder)"
    )


def test_the_exports_still_never_print_a_raw_n(data: reports.ReportData) -> None:
    back = report_store.decode(report_store.encode(data))
    for figure in figures(back):
        assert "n" not in figure.model_dump() and '"n":' not in figure.model_dump_json()
    exported = report_json.render_json(back)
    assert exported == report_json.render_json(data)
    document = json.loads(exported)
    rows = [row for injury in document["injuries"] for section in injury["sections"] for row in section["figures"]]
    hidden = [r for r in rows if not r["n_display"].isdigit()]  # "< 11" or "suppressed"
    assert len(rows) > 50 and hidden, "the cohort has figures whose n is suppressed"
    assert all(r["n"] is None for r in hidden), "a suppressed n is null in the JSON export"
    assert all(r["n"] == int(r["n_display"]) for r in rows if r not in hidden)
    assert report_csv.render_csv(back) == report_csv.render_csv(data)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"format": 0, "report": {}}',
        '{"format": 1}',
        '{"format": 1, "report": {"clinic_id": "x"}}',
    ],
)
def test_anything_else_does_not_decode(text: str) -> None:
    with pytest.raises(report_store.UnreadableSnapshot):
        report_store.decode(text)


def test_a_stored_snapshot_that_does_not_decode_reads_as_missing(
    db: Session, clinic: Clinic, data: reports.ReportData, caplog: pytest.LogCaptureFixture
) -> None:
    version = f'"format":{report_store.FORMAT_VERSION}'
    text = report_store.encode(data).replace(version, '"format":99')
    assert text != report_store.encode(data)
    db.add(ReportSnapshot(clinic_id=clinic.id, view_key=ALL_TIME, computed_at=NOW, seconds=1.0, data=text))
    db.commit()
    with caplog.at_level(logging.WARNING, logger="needlecare.outcomes.store"):
        assert report_store.get(db, clinic.id, ALL_TIME) is None
    (record,) = caplog.records
    assert record.getMessage() == (
        f"report snapshot of clinic {clinic.id}, view {ALL_TIME} does not decode; treated as missing"
    )


# ---- keys and views -------------------------------------------------------------------------------------------


def test_view_keys_are_canonical() -> None:
    since = datetime(2026, 8, 24, 0, 0, tzinfo=ZoneInfo("America/New_York"))
    assert report_store.view_key(None, None, since, None) == (
        "injury=*;practitioner=*;since=2026-08-24T04:00:00+00:00;until=-"
    )
    assert report_store.view_key(None, None, since.astimezone(UTC), None) == report_store.view_key(
        None, None, since, None
    )
    assert (
        report_store.view_key("pfps", 7, None, since)
        == "injury=pfps;practitioner=7;since=-;until=2026-08-24T04:00:00+00:00"
    )
    assert report_store.view_key(None, None, None, None) == ALL_TIME
    with pytest.raises(ValueError, match="timezone-aware"):
        report_store.view_key(None, None, datetime(2026, 1, 1), None)


def test_standard_views_are_the_dashboards_preset_periods(clinic: Clinic) -> None:
    now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # still 21 Nov in New York
    views = report_store.standard_views(clinic, now)
    assert [v.name for v in views] == list(PERIODS)
    for view in views:
        page = read_filters({"period": view.name}, practitioners=[], tz=clinic.timezone, now=now)
        assert (view.injury, view.practitioner_id, view.since, view.until) == (None, None, page.since, page.until)
    ninety = next(v for v in views if v.name == "90d")
    assert ninety.key == "injury=*;practitioner=*;since=2026-08-23T04:00:00+00:00;until=-"


# ---- storage --------------------------------------------------------------------------------------------------


def test_put_upserts_and_never_replaces_newer_figures(db: Session, clinic: Clinic, data: reports.ReportData) -> None:
    assert report_store.get(db, clinic.id, ALL_TIME) is None and report_store.stamp(db, clinic.id, ALL_TIME) is None
    assert report_store.put(db, clinic.id, ALL_TIME, data, 1.5)
    stored = report_store.get(db, clinic.id, ALL_TIME)
    assert stored is not None and stored.data == data
    assert (stored.computed_at, stored.seconds) == (NOW, 1.5) and stored.computed_at.tzinfo is not None
    later = NOW + timedelta(minutes=15)
    assert report_store.put(db, clinic.id, ALL_TIME, data, 2.5, computed_at=later)
    assert report_store.stamp(db, clinic.id, ALL_TIME) == report_store.Stamp(later, 2.5)
    assert not report_store.put(db, clinic.id, ALL_TIME, data, 9.0, computed_at=NOW), "an older report is dropped"
    assert report_store.stamp(db, clinic.id, ALL_TIME) == report_store.Stamp(later, 2.5)
    add_clinic(db, ClinicCreate(id="hillside", name="Hillside", email="h@hillside.example"), actor="test")
    assert report_store.put(db, "hillside", ALL_TIME, data, 3.0)
    rows = db.exec(select(ReportSnapshot).order_by(ReportSnapshot.clinic_id)).all()
    assert [(r.clinic_id, r.view_key) for r in rows] == [("hillside", ALL_TIME), (clinic.id, ALL_TIME)]


def test_prune_deletes_only_older_snapshots(db: Session, clinic: Clinic, data: reports.ReportData) -> None:
    for days in (0, 1, 3, 5):
        report_store.put(db, clinic.id, f"k{days}", data, 1.0, computed_at=NOW - timedelta(days=days))
    assert report_store.prune(db, NOW - timedelta(days=2)) == 2
    assert report_store.prune(db, NOW - timedelta(days=2)) == 0
    assert sorted(db.exec(select(ReportSnapshot.view_key)).all()) == ["k0", "k1"]


def test_refresh_computes_and_stores_each_view(db: Session, clinic: Clinic) -> None:
    seed(db)
    now = utcnow()
    views = report_store.standard_views(clinic, now)
    seen: list[tuple[str, Any]] = []
    counts = report_store.refresh(db, clinic.id, views, now, progress=lambda v, r: seen.append((v.name, r)))
    assert (counts.views, counts.stored, counts.failed) == (4, 4, 0)
    assert [name for name, _ in seen] == [name for p in PERIODS for name in (p, p)]
    assert all(r is None for _, r in seen[::2]) and all(r.error is None and r.seconds > 0 for _, r in seen[1::2])
    for view in views:
        stored = report_store.get(db, clinic.id, view.key)
        assert stored is not None and stored.data.filters.since == view.since
    with pytest.raises(reports.UnknownClinic, match="known clinics: riverside-physio"):
        report_store.refresh(db, "nowhere", views, now)


# ---- flows ----------------------------------------------------------------------------------------------------


def test_the_flow_precomputes_every_clinic_and_prunes(
    env: Path, db: Session, clinic: Clinic, data: reports.ReportData, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.reports import refresh_dashboard_figures

    add_clinic(db, ClinicCreate(id="hillside", name="Hillside", email="h@hillside.example"), actor="test")
    report_store.put(db, clinic.id, "old-view", data, 1.0, computed_at=utcnow() - timedelta(days=3))
    logger = logging.getLogger("needlecare.flows.reports")
    logger.addHandler(caplog.handler)  # directly: Prefect may reconfigure the root logger's handlers
    try:
        with caplog.at_level(logging.INFO, logger="needlecare.flows.reports"):
            summary = refresh_dashboard_figures.fn()
    finally:
        logger.removeHandler(caplog.handler)
    assert summary == {"clinics": 2, "views": 8, "stored": 8, "failed": 0, "pruned": 1}
    keys = {(r.clinic_id, r.view_key) for r in db.exec(select(ReportSnapshot)).all()}
    for cid in (clinic.id, "hillside"):
        row = db.get(Clinic, cid)
        assert row is not None
        assert {(cid, view.key) for view in report_store.standard_views(row, utcnow())} <= keys
    assert "clinic riverside-physio: 4 of 4 view(s) stored, 0 failed" in caplog.text
    assert "Achilles" not in caplog.text and "achilles" not in caplog.text, "no figures or injuries in the log"
    assert refresh_dashboard_figures.fn(clinic_id="hillside")["views"] == 4
    with pytest.raises(reports.UnknownClinic):
        refresh_dashboard_figures.fn(clinic_id="nowhere")


def test_the_nightly_flow_stores_its_all_time_report(
    env: Path, db: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.reports import compile_outcome_reports

    seed(db)
    monkeypatch.setenv("NEEDLECARE_CHROMIUM", "/nonexistent/chromium")
    assert compile_outcome_reports.fn(clinic_id=clinic.id) == {"clinics": 1, "files": 3, "failed": 0}
    stored = report_store.get(db, clinic.id, ALL_TIME)
    assert stored is not None and stored.data.filters.injury is None and stored.data.filters.since is None
    assert stored.data.outcomes.rows and stored.seconds > 0


def test_the_deployment_runs_the_flow_every_15_minutes() -> None:
    from flows.serve import build_deployments

    deployment = {d.name: d for d in build_deployments()}["refresh-dashboard-figures"]
    assert deployment.entrypoint is not None
    assert deployment.entrypoint.endswith("flows/reports.py:refresh_dashboard_figures")
    (interval,) = [s.schedule for s in deployment.schedules or []]
    assert isinstance(interval, IntervalSchedule) and interval.interval == timedelta(minutes=15)


def test_new_reporting_rules_clear_the_clinics_stored_figures(
    env: Path, db: Session, clinic: Clinic, data: reports.ReportData
) -> None:
    from typer.testing import CliRunner

    from needlecare.cli.main import app

    add_clinic(db, ClinicCreate(id="hillside", name="Hillside", email="h@hillside.example"), actor="test")
    report_store.put(db, clinic.id, ALL_TIME, data, 1.0)
    report_store.put(db, "hillside", ALL_TIME, data, 1.0)
    rules = env / "clinic.toml"
    rules.write_text("[reporting]\nmin_paired = 30\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["clinic", "configure", clinic.id, "--file", str(rules)])
    assert result.exit_code == 0, result.output
    assert "1 stored dashboard view(s) cleared" in result.output
    db.expire_all()
    assert report_store.stamp(db, clinic.id, ALL_TIME) is None, "figures under the old rules are gone"
    assert report_store.stamp(db, "hillside", ALL_TIME) is not None, "other clinics keep theirs"
