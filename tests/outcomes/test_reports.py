"""Outcome reports end to end on SQLite and PostgreSQL: HTML, CSV, JSON and PDF hold the same figures, show
"< 11" / "insufficient data" where suppressed and never the hidden number; the CLI, the nightly flow and its
cron deployment."""

import csv
import html as html_lib
import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from pypdf import PdfReader
from scipy import stats as sps
from sqlmodel import Session
from typer.testing import CliRunner

from models import Clinic, ClinicCreate
from needlecare.cli.main import app
from needlecare.core import db as database
from needlecare.core.settings import get_settings
from needlecare.intake.clinics import add_clinic
from needlecare.outcomes import report_csv, report_files, report_html, report_json, report_pdf, report_rows, reports
from needlecare.safety.clinic_config import ClinicConfig, ReportPolicy, to_stored
from tests.conftest import DB_KINDS
from tests.outcome_rows import T0, OutcomeRows
from tests.pg import PgCluster

CLINIC = "riverside-physio"
OTHER = "hillside-physio"
OTHER_NAME = "Hillside <Sports> & Rehab"
NOW = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
runner = CliRunner()
needs_chromium = pytest.mark.skipif(not report_pdf.chromium_available(), reason="Chromium is not installed")


def seed(db: Session) -> None:
    """Achilles: enough answers for shown figures; plantar: 14 of 15 (complementary suppression, n < 20);
    shin splints: 3 of 4 (every count "< 11")."""
    rows = OutcomeRows(db, CLINIC)
    for i in range(45):
        pain = 5 + i % 4
        ep = rows.episode(
            "achilles_tendinopathy",
            pain=pain,
            rom_measure="wblt_cm",
            rom_value=8.0 + (i % 5) * 0.5,
            started_at=T0 + timedelta(days=i % 7),
        )
        session = rows.session(ep)
        if i < 32:
            contact, _ = rows.answer(
                ep, "check_24h", session_id=session, soreness=2 + i % 4, bruise="small" if i % 3 == 0 else "none"
            )
            if i < 12:
                rows.escalation(
                    ep,
                    contact_id=contact,
                    rules=["R8"],
                    opened_at=ep.started_at + timedelta(hours=25),
                    acknowledged_at=ep.started_at + timedelta(hours=26),
                    session_id=session,
                )
        else:
            rows.contact(ep, "check_24h", session_id=session, status="expired")
        if i < 30:
            rows.answer(ep, "check_72h", session_id=session, nprs_usual=pain - 1, soreness=1)
        else:
            rows.contact(ep, "check_72h", session_id=session, status="expired")
        if i < 32:
            responder = i < 20  # 20 responders (-3 points), 12 not (-1 point)
            rows.answer(
                ep,
                "outcome_6wk",
                nprs_usual=pain - 3 if responder else pain - 1,
                rom_measure="wblt_cm",
                rom_value=8.0 + (i % 5) * 0.5 + (2.0 if responder else 0.5),
                groc15=4 if responder else 1,
            )
        else:
            rows.contact(ep, "outcome_6wk", status="expired")
        if i < 15:
            rows.answer(ep, "outcome_12wk", nprs_usual=pain - 3)
        else:
            rows.contact(ep, "outcome_12wk", status="expired")
    for i in range(15):
        ep = rows.episode("plantar_fasciitis", pain=6)
        if i < 14:
            rows.answer(ep, "outcome_6wk", nprs_usual=3 + i % 3)
        else:
            rows.contact(ep, "outcome_6wk", status="expired")
    for i in range(4):
        ep = rows.episode("mtss", pain=7)
        if i < 3:
            rows.answer(ep, "outcome_6wk", nprs_usual=4)
        else:
            rows.contact(ep, "outcome_6wk", status="sent")
    rows.commit()


@pytest.fixture(scope="module", params=DB_KINDS)
def report_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database with two clinics and the outcome rows above, built once per module and kind."""
    cluster: PgCluster | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'app.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        name = cluster.create_database()
        url = cluster.url(name)
    database.upgrade(url)
    with Session(database.get_engine(url), expire_on_commit=False) as db:
        for clinic_id, clinic_name in ((CLINIC, "Riverside Physio"), (OTHER, OTHER_NAME)):
            data = ClinicCreate(
                id=clinic_id, name=clinic_name, email="desk@clinic.example", timezone="America/New_York"
            )
            add_clinic(db, data, actor="test", secret="whsec_reports")
        seed(db)
    yield url
    database.get_engine(url).dispose()
    if cluster is not None:
        cluster.drop_database(name)


@pytest.fixture(scope="module")
def data(report_url: str) -> reports.ReportData:
    with Session(database.get_engine(report_url)) as db:
        return reports.build_report(db, CLINIC, now=NOW)


@pytest.fixture(scope="module")
def html(data: reports.ReportData) -> str:
    return report_html.render_html(data)


@pytest.fixture(scope="module")
def csv_rows(data: reports.ReportData) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(report_csv.render_csv(data))))


class Cells(HTMLParser):
    """The text chunks of every <td data-key=...> cell (one chunk per span)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, list[str]] = {}
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":
            self._key = dict(attrs).get("data-key")
            if self._key is not None:
                assert self._key not in self.cells, f"duplicate cell {self._key}"
                self.cells[self._key] = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._key = None

    def handle_data(self, text: str) -> None:
        if self._key is not None and text.strip():
            self.cells[self._key].append(" ".join(text.split()))


def html_cells(page: str) -> dict[str, list[str]]:
    parser = Cells()
    parser.feed(page)
    return parser.cells


def key(row: dict[str, str]) -> str:
    return "|".join((row["injury"], row["section"], row["step"], row["measure"], row["metric"]))


def one(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


# ---- building ------------------------------------------------------------------------------------------------


def test_unknown_clinic_and_injury_are_refused_with_the_allowed_values(report_url: str) -> None:
    with Session(database.get_engine(report_url)) as db:
        with pytest.raises(reports.UnknownClinic, match=f"known clinics: {OTHER}, {CLINIC}"):
            reports.build_report(db, "nowhere")
        with pytest.raises(reports.UnknownInjury, match="choose one of: achilles_tendinopathy, plantar_fasciitis"):
            reports.build_report(db, CLINIC, injury="tennis_elbow")
        with pytest.raises(reports.ReportError, match="timezone-aware"):
            reports.build_report(db, CLINIC, since=datetime(2026, 1, 1))
        with pytest.raises(reports.ReportError, match="must be before"):
            reports.build_report(db, CLINIC, since=date(2026, 2, 1), until=date(2026, 1, 1))


def test_dates_are_read_in_the_clinic_time_zone_and_filter_the_cohort(report_url: str) -> None:
    with Session(database.get_engine(report_url)) as db:
        later = reports.build_report(db, CLINIC, since=date(2026, 1, 8), now=NOW)
        empty = reports.build_report(db, CLINIC, until=date(2026, 1, 1), now=NOW)
    assert later.filters.since == datetime(2026, 1, 8, tzinfo=ZoneInfo("America/New_York"))
    achilles = [r for r in later.outcomes.rows if r.injury == "achilles_tendinopathy"]
    assert achilles and all(r.raw.contacts_due < 45 for r in achilles)
    assert report_rows.figure_rows(empty) == []
    page = report_html.render_html(empty)
    assert "No episode of this clinic matches the filters yet." in page
    assert "episodes started before 2026-01-01 00:00 (America/New_York)" in page


def test_report_data_carries_context_and_definitions(data: reports.ReportData) -> None:
    assert (data.clinic_id, data.clinic_name, data.generated_at) == (CLINIC, "Riverside Physio", NOW)
    assert data.policy == ReportPolicy()
    assert data.injuries == ["achilles_tendinopathy", "mtss", "plantar_fasciitis"]
    assert data.snapshot_date == date(2026, 3, 2) and data.stem == "outcomes"
    terms = [d.term for d in data.definitions]
    assert "Pain responder" in terms and "Small numbers" in terms and "Range-of-motion change and responders" in terms
    small = next(d for d in data.definitions if d.term == "Small numbers")
    assert "'< 11'" in small.text and "at least 20 paired answers" in small.text


def test_the_clinic_config_sets_the_policy(report_url: str) -> None:
    with Session(database.get_engine(report_url)) as db:
        clinic = db.get(Clinic, OTHER)
        assert clinic is not None
        clinic.config = to_stored(ClinicConfig(reporting=ReportPolicy(min_count_shown=6, min_paired=30)))
        db.add(clinic)
        db.commit()
        try:
            data = reports.build_report(db, OTHER, now=NOW)
            explicit = reports.build_report(db, OTHER, policy=ReportPolicy(), now=NOW)
        finally:
            clinic.config = None
            db.add(clinic)
            db.commit()
    assert (data.policy.min_count_shown, data.policy.min_paired) == (6, 30) and explicit.policy == ReportPolicy()
    small = next(d for d in data.definitions if d.term == "Small numbers")
    assert "Counts from 1 to 5 are shown as '< 6'" in small.text and "at least 30 paired answers" in small.text


# ---- HTML ----------------------------------------------------------------------------------------------------


def test_html_is_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(http" not in html
    assert "<img" not in html and "<iframe" not in html
    assert html.count("<svg ") == 2  # responder bars + Achilles (nothing of the other injuries can be plotted)
    assert '<svg role="img" aria-labelledby="responders-title responders-desc"' in html
    assert '<title id="traj-achilles_tendinopathy-title">' in html
    assert "<style>" in html


def test_html_shows_suppressed_cells_as_their_text_and_never_the_hidden_number(
    html: str, data: reports.ReportData
) -> None:
    cells = html_cells(html)
    assert cells["mtss|follow_up|outcome_6wk||contacts_due"] == ["< 11"]
    assert cells["mtss|follow_up|outcome_6wk||response_rate"] == ["suppressed", "n = < 11"]
    # below the minimum, a cell says how many answers it has of the 20 it needs, never a hidden count:
    # 3 paired answers read "< 11 of 20"; plantar's 14 is hidden (complementary), so it reads "fewer than 20"
    mtss_need = "< 11 of 20 paired answers, at least 10 more needed"
    assert cells["mtss|pain_change|outcome_6wk|nprs_usual|mean_change"] == ["insufficient data", "n = < 11", mtss_need]
    assert cells["mtss|pain_change|outcome_6wk|nprs_usual|responder_rate"] == [
        "insufficient data",
        "n = < 11",
        mtss_need,
    ]
    assert cells["plantar_fasciitis|pain_change|outcome_6wk|nprs_usual|mean_change"] == [
        "insufficient data",
        "n = suppressed",
        "fewer than 20 paired answers",
    ]
    # 14 answered and 1 not answered of 15: the "1" is "< 11" and the 14 is hidden with it (complementary).
    assert cells["plantar_fasciitis|follow_up|outcome_6wk||contacts_not_answered"] == ["< 11"]
    assert cells["plantar_fasciitis|follow_up|outcome_6wk||contacts_answered"] == ["suppressed"]
    # No shin-splints cell holds a number other than the 11 of "< 11" (raw: 4 due, 3 answered).
    policy_only = re.compile(  # numbers of the rules, not of the data
        r"(?:< 11 of 20|fewer than 20) (?:paired )?answers(?:, at least 10 more needed)?"
    )
    for cell_key, parts in cells.items():
        if cell_key.startswith("mtss|"):
            text = " ".join(p for p in parts if not policy_only.fullmatch(p)).replace("< 11", "")
            assert not re.search(r"\d", text), (cell_key, parts)
    (mtss,) = [r for r in data.outcomes.rows if r.injury == "mtss"]
    assert (mtss.raw.contacts_due, mtss.raw.contacts_answered) == (4, 3)  # the hidden raw numbers exist, only here


def test_html_escapes_names_and_shows_definitions_and_sources(report_url: str, html: str) -> None:
    with Session(database.get_engine(report_url)) as db:
        other = report_html.render_html(reports.build_report(db, OTHER, now=NOW))
    assert "Hillside &lt;Sports&gt; &amp; Rehab" in other and "<Sports>" not in other
    definitions = html.index('id="definitions-title"')
    assert html.index("Pain responder", definitions) > definitions
    assert "Farrar JT et al." in html[definitions:] and "CMS Cell Size Suppression Policy" in html[definitions:]


# ---- headline and charts without bars -------------------------------------------------------------------------


def test_the_headline_counts_each_patient_once_at_their_latest_outcome_answer(data: reports.ReportData) -> None:
    """By hand from ``seed`` (one patient per episode). Achilles: 45 due; 32 answered at 6 weeks, of whom i < 15
    answered at 12 weeks too (pain - 3: all responders), counted there; the other 17 at 6 weeks: i 15-19
    responders (-3), i 20-31 not (-1) -> 20 of 32. Plantar: 15 due, 14 answered, baseline 6 -> 3, 4, 5 by i % 3:
    drops 3 and 2 meet the rule (2 points and 30 % of 6 = 1.8), drop 1 does not -> 10 of 14. Shin splints: 4 due,
    3 answered, 7 -> 4 -> 3 of 3. Total: 64 due, 49 answered, 49 paired, 33 improved."""
    h = data.outcomes.headline
    assert (h.raw.patients_due, h.raw.patients_answered, h.raw.paired, h.raw.responders) == (64, 49, 49, 33)
    low, high = sps.binomtest(33, 49).proportion_ci(method="wilson")
    assert h.responder_rate.value == pytest.approx(100 * 33 / 49)
    assert h.responder_rate.low == pytest.approx(100 * low) and h.responder_rate.high == pytest.approx(100 * high)
    r_low, r_high = sps.binomtest(49, 64).proportion_ci(method="wilson")
    assert h.response_rate.value == pytest.approx(100 * 49 / 64)
    assert h.response_rate.low == pytest.approx(100 * r_low) and h.response_rate.high == pytest.approx(100 * r_high)
    assert (h.n.display, h.responders.display, h.patients_due.display) == ("49", "33", "64")


def test_the_report_opens_with_the_headline(html: str) -> None:
    start = html.index('id="headline"')
    assert start < html.index('id="overview-title"') < html.index('id="injury-')
    section = html_lib.unescape(re.sub(r"\s+", " ", html[start : html.index("</section>", start)]))
    low, high = sps.binomtest(33, 49).proportion_ci(method="wilson")
    assert f"{100 * 33 / 49:.1f} %" in section and "(33 of 49)" in section
    assert f"95 % CI {100 * low:.1f} to {100 * high:.1f} %" in section
    assert "n = 49 patients with a baseline and an answered outcome survey" in section
    assert f"Response rate {100 * 49 / 64:.1f} % (49 of 64 patients due an outcome survey" in section


@pytest.mark.parametrize(
    ("injury", "responders", "trajectory"),
    [
        # 3 paired answers, 4 baselines: both "< 11"
        ("mtss", "< 11 of 20", "< 11 of 20"),
        # 14 paired answers hidden beside the 1 not answered; 15 baselines shown
        ("plantar_fasciitis", "fewer than 20", "15 of 20"),
    ],
)
def test_no_chart_is_drawn_without_bars(report_url: str, injury: str, responders: str, trajectory: str) -> None:
    with Session(database.get_engine(report_url)) as db:
        data = reports.build_report(db, CLINIC, injury=injury, now=NOW)
    charts = report_html.render_charts(data)
    assert charts.responders is None and charts.trajectories == {}
    page = report_html.render_html(data, charts)
    assert "<svg" not in page and "<figure" not in page, "no chart element without a bar or point"
    text = html_lib.unescape(page)
    assert (
        f'id="responders-empty">Not enough paired answers yet for this chart: the largest group has {responders}.'
        in text
    )
    assert (
        f'id="chart-empty-{injury}">Not enough answers yet for this chart: the largest group has {trajectory}.' in text
    )
    headline = text[text.index('id="headline"') : text.index('id="overview-title"')]
    assert "Not shown yet:" in headline and "<svg" not in headline


def test_the_responder_chart_is_drawn_when_one_bar_has_a_rate(data: reports.ReportData) -> None:
    charts = report_html.render_charts(data)
    assert charts.responders is not None and charts.responders.startswith("<svg")
    assert charts.responders_note == "" and set(charts.trajectory_notes) == {"mtss", "plantar_fasciitis"}


# ---- CSV and JSON --------------------------------------------------------------------------------------------


def test_csv_json_and_html_hold_the_same_figures(html: str, csv_rows: list[dict[str, str]], data: Any) -> None:
    assert list(csv_rows[0]) == list(report_rows.CSV_COLUMNS)
    document = json.loads(report_json.render_json(data))
    flattened: list[dict[str, str]] = []
    for injury in document["injuries"]:
        for section in injury["sections"]:
            for figure in section["figures"]:
                record = {"clinic": document["clinic"]["id"], "injury": injury["injury"], "section": section["section"]}
                record |= figure
                flattened.append(
                    {
                        c: ""
                        if record[c] is None
                        else repr(record[c])
                        if isinstance(record[c], float)
                        else str(record[c])
                        for c in report_rows.CSV_COLUMNS
                    }
                )
    assert flattened == csv_rows
    cells = html_cells(html)
    assert set(cells) == {key(r) for r in csv_rows}
    for row in csv_rows:
        parts = cells[key(row)]
        assert parts[0] == row["display"], (key(row), parts, row)
        if row["ci_low"]:
            assert f"95 % CI {float(row['ci_low']):.1f} to {float(row['ci_high']):.1f}" in parts
        if row["unit"] != "count":
            assert f"n = {row['n_display']}" in parts


def test_csv_values_agree_with_their_display_and_hidden_ones_are_empty(csv_rows: list[dict[str, str]]) -> None:
    for row in csv_rows:
        if row["suppressed_reason"]:
            assert row["value"] == row["ci_low"] == row["ci_high"] == "", row
            assert row["display"] in ("< 11", "suppressed", "insufficient data", "no data", "no MCID"), row
        elif row["unit"] == "count":
            assert row["display"] == row["value"]
        elif row["unit"] == "%":
            assert row["display"] == f"{float(row['value']):.1f} %"
        else:
            assert row["display"].split(" ")[0] == f"{float(row['value']):.1f}"
        if row["n_display"] in ("< 11", "suppressed"):
            assert row["n"] == ""
        else:
            assert row["n"] == row["n_display"]
        if row["unit"] == "count" and row["suppressed_reason"]:  # a count's n is the count: hidden with it
            assert row["n"] == "" and row["n_display"] == row["display"], row
    answered = one(csv_rows, injury="plantar_fasciitis", section="follow_up", metric="contacts_answered")
    assert answered["suppressed_reason"] == "complementary" and "14" not in answered.values()
    for row in (r for r in csv_rows if r["injury"] == "mtss"):
        assert row["value"] in ("", "0") and row["n"] in ("", "0") and row["response_rate"] == "", row


def test_figures_match_the_statistics(csv_rows: list[dict[str, str]]) -> None:
    base = {"injury": "achilles_tendinopathy", "step": "outcome_6wk"}
    rate = one(csv_rows, **base, section="follow_up", metric="response_rate")
    assert float(rate["value"]) == pytest.approx(100 * 32 / 45) and rate["display"] == "71.1 %"
    mean = one(csv_rows, **base, section="pain_change", metric="mean_change")
    assert float(mean["value"]) == pytest.approx((20 * -3 + 12 * -1) / 32)
    assert float(mean["response_rate"]) == pytest.approx(100 * 32 / 45)
    responders = one(csv_rows, **base, section="pain_change", metric="responder_rate")
    low, high = sps.binomtest(20, 32).proportion_ci(method="wilson")
    assert responders["display"] == "62.5 %" and responders["n"] == "32"
    assert float(responders["ci_low"]) == pytest.approx(100 * low) and float(responders["ci_high"]) == pytest.approx(
        100 * high
    )
    rom = one(csv_rows, **base, section="rom_change", measure="wblt_cm", metric="responder_rate")
    assert rom["display"] == "62.5 %"  # 20 of 32 gained >= 1.6 cm (MDC)


# ---- PDF -----------------------------------------------------------------------------------------------------


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return " ".join(unicodedata.normalize("NFKC", text).replace("\u2212", "-").split())


def pdf_text_of_page(content: bytes, index: int) -> str:
    page = PdfReader(io.BytesIO(content)).pages[index]
    return " ".join(unicodedata.normalize("NFKC", page.extract_text() or "").replace("\u2212", "-").split())


@needs_chromium
def test_a_pdf_without_bars_says_so_on_its_first_page(report_url: str) -> None:
    with Session(database.get_engine(report_url)) as db:
        data = reports.build_report(db, CLINIC, injury="mtss", now=NOW)
    first = pdf_text_of_page(report_pdf.render_pdf(data), 0)
    assert "Pain improved at the latest outcome survey" in first
    assert "Not shown yet: < 11 of 20 patients with a baseline and an answered outcome survey" in first
    assert "Not enough paired answers yet for this chart: the largest group has < 11 of 20." in first


@needs_chromium
def test_pdf_opens_and_shows_the_same_key_figures(data: reports.ReportData, html: str) -> None:
    content = report_pdf.render_pdf(data, html=html)
    assert content.startswith(b"%PDF")
    assert len(PdfReader(io.BytesIO(content)).pages) >= 2
    text = pdf_text(content)
    assert "Outcome report: Riverside Physio" in text
    first = pdf_text_of_page(content, 0)
    assert "Pain improved at the latest outcome survey" in first, "the headline is on the first page"
    assert f"{100 * 33 / 49:.1f} %" in first and "n = 49 patients" in first and "95 % CI" in first
    rows = report_rows.figure_rows(data)
    key_figures = [r for r in rows if r.metric in ("response_rate", "responder_rate", "mean_change", "contacts_due")]
    assert key_figures
    for row in key_figures:
        assert row.display in text, row
        if row.kind != "count":
            assert f"n = {row.n_display}" in text, row
    assert "71.1 %" in text and "62.5 %" in text and "< 11" in text and "insufficient data" in text
    # Nothing is cut off at the page edge: every interval printed in the HTML is in the PDF too.
    for row in rows:
        if row.ci_low is not None and row.ci_high is not None:
            assert f"95 % CI {row.ci_low:.1f} to {row.ci_high:.1f}" in text, row


def test_pdf_without_chromium_says_what_to_install(data: reports.ReportData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEEDLECARE_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(report_pdf.PdfUnavailable, match="NEEDLECARE_CHROMIUM=/nonexistent/chromium"):
        report_pdf.render_pdf(data, html="<p>x</p>")
    monkeypatch.delenv("NEEDLECARE_CHROMIUM")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(report_pdf.PdfUnavailable, match="apt-get install chromium"):
        report_pdf.render_pdf(data, html="<p>x</p>")
    assert not report_pdf.chromium_available()


# ---- snapshots -----------------------------------------------------------------------------------------------


def test_write_snapshot_writes_dated_files_atomically(data: reports.ReportData, tmp_path: Path) -> None:
    paths = report_files.write_snapshot(data, tmp_path, ["csv", "json", "html", "csv"])
    folder = tmp_path / CLINIC / "2026-03-02"
    assert paths == [folder / "outcomes.csv", folder / "outcomes.json", folder / "outcomes.html"]
    assert sorted(os.listdir(folder)) == ["outcomes.csv", "outcomes.html", "outcomes.json"]  # no temp file left
    assert paths[0].read_text() == report_csv.render_csv(data)
    with pytest.raises(reports.ReportError, match="choose from: html, csv, json, pdf"):
        report_files.write_snapshot(data, tmp_path, ["docx"])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "outcomes.csv"
    target.write_text("old")

    def broken(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report_files.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        report_files.write_atomic(target, b"new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["outcomes.csv"]


def test_an_injury_report_is_named_after_the_injury(report_url: str, tmp_path: Path) -> None:
    with Session(database.get_engine(report_url)) as db:
        data = reports.build_report(db, CLINIC, injury="mtss", now=NOW)
    assert data.injuries == ["mtss"]
    (path,) = report_files.write_snapshot(data, tmp_path, ["json"])
    assert path == tmp_path / CLINIC / "2026-03-02" / "outcomes-mtss.json"
    assert json.loads(path.read_text())["filters"]["injury"] == "mtss"


# ---- command line --------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(report_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEEDLECARE_DATABASE_URL", report_url)
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_writes_one_file_with_a_progress_bar(cli_env: Path) -> None:
    out = cli_env / "riverside.html"
    result = runner.invoke(app, ["report", "--clinic", CLINIC, "--since", "2026-01-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert f"Report for {CLINIC}" in result.stderr
    page = out.read_text()
    assert "episodes started from 2026-01-01 00:00 (America/New_York)" in page and "<svg " in page


def test_cli_writes_a_dated_snapshot_for_several_formats(cli_env: Path) -> None:
    out = cli_env / "reports"
    result = runner.invoke(
        app, ["report", "--clinic", CLINIC, "--injury", "achilles_tendinopathy", "-f", "csv,json", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    today = datetime.now(UTC).date().isoformat()
    folder = out / CLINIC / today
    assert result.stdout.split() == [
        str(folder / "outcomes-achilles_tendinopathy.csv"),
        str(folder / "outcomes-achilles_tendinopathy.json"),
    ]
    rows = list(csv.DictReader(io.StringIO((folder / "outcomes-achilles_tendinopathy.csv").read_text())))
    assert {r["injury"] for r in rows} == {"achilles_tendinopathy"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clinic", "nowhere"], f"unknown clinic 'nowhere'; known clinics: {OTHER}, {CLINIC}"),
        (
            ["--clinic", CLINIC, "--injury", "knee"],
            "--injury: unknown injury 'knee'; choose one of: achilles_tendinopathy",
        ),
        (["--clinic", CLINIC, "--since", "01/02/2026"], "--since: '01/02/2026' is not a date; use YYYY-MM-DD"),
        (
            ["--clinic", CLINIC, "--format", "docx"],
            "--format: unknown format 'docx'; choose from: html, csv, json, pdf",
        ),
        (["--clinic", CLINIC, "--format", "csv"], "the extension does not match --format csv; use"),
    ],
)
def test_cli_errors_exit_2_and_say_what_to_change(cli_env: Path, args: list[str], message: str) -> None:
    out = cli_env / "report.html"
    result = runner.invoke(app, ["report", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output and not out.exists()


def test_cli_pdf_without_chromium_exits_2(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEEDLECARE_CHROMIUM", "/nonexistent/chromium")
    result = runner.invoke(app, ["report", "--clinic", CLINIC, "-f", "pdf", "--out", str(cli_env / "r.pdf")])
    assert result.exit_code == 2 and "is not an executable" in result.stderr


# ---- nightly flow and its deployment ------------------------------------------------------------------------


def test_flow_writes_the_dated_snapshot_for_every_clinic(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.reports import compile_outcome_reports

    monkeypatch.setenv("NEEDLECARE_CHROMIUM", "/nonexistent/chromium")  # PDF skipped with a warning
    logger = logging.getLogger("needlecare.flows.reports")
    logger.addHandler(caplog.handler)  # directly: Prefect may reconfigure the root logger's handlers
    try:
        with caplog.at_level(logging.INFO, logger="needlecare.flows.reports"):
            summary = compile_outcome_reports.fn()
    finally:
        logger.removeHandler(caplog.handler)
    assert summary == {"clinics": 2, "files": 6, "failed": 0}
    assert "PDF reports skipped" in caplog.text
    for clinic_id in (CLINIC, OTHER):
        (folder,) = (cli_env / "reports" / clinic_id).iterdir()
        assert date.fromisoformat(folder.name) >= NOW.date()
        assert sorted(p.name for p in folder.iterdir()) == ["outcomes.csv", "outcomes.html", "outcomes.json"]
    assert re.search(r"clinic riverside-physio: 3 file\(s\)", caplog.text)


@needs_chromium
def test_flow_for_one_clinic_includes_the_pdf(cli_env: Path) -> None:
    from flows.reports import compile_outcome_reports

    assert compile_outcome_reports.fn(clinic_id=CLINIC) == {"clinics": 1, "files": 4, "failed": 0}
    (folder,) = (cli_env / "reports" / CLINIC).iterdir()
    assert (folder / "outcomes.pdf").read_bytes().startswith(b"%PDF")
    assert not (cli_env / "reports" / OTHER).exists()


def test_flow_refuses_an_unknown_clinic(cli_env: Path) -> None:
    from flows.reports import compile_outcome_reports

    with pytest.raises(reports.UnknownClinic, match="known clinics"):
        compile_outcome_reports.fn(clinic_id="nowhere")


def test_the_nightly_deployment_has_its_cron_and_dispatch_keeps_its_interval() -> None:
    from flows.serve import build_deployments

    deployments = {d.name: d for d in build_deployments(dispatch_interval=7)}
    nightly = deployments["nightly-outcome-reports"]
    assert nightly.entrypoint is not None and nightly.entrypoint.endswith("flows/reports.py:compile_outcome_reports")
    (cron,) = [s.schedule for s in nightly.schedules or []]
    assert isinstance(cron, CronSchedule) and (cron.cron, cron.timezone) == ("30 2 * * *", "UTC")
    (interval,) = [s.schedule for s in deployments["dispatch"].schedules or []]
    assert isinstance(interval, IntervalSchedule) and interval.interval == timedelta(seconds=7)
    assert not deployments["on-session-completed"].schedules and deployments["on-survey-answered"].triggers
    (default,) = [s.schedule for s in {d.name: d for d in build_deployments()}["dispatch"].schedules or []]
    assert isinstance(default, IntervalSchedule) and default.interval == timedelta(seconds=30)


def test_csv_rows_never_carry_a_suppressed_answered_count_as_n(db: Session, clinic: Clinic) -> None:
    """15 due, 14 answered: 'answered' is hidden with the '< 11' unanswered cell, and no n may show 14."""
    rows = OutcomeRows(db, clinic.id)
    for i in range(15):
        ep = rows.episode("pfps", pain=7)
        if i < 14:
            rows.answer(ep, "outcome_6wk", nprs_usual=3)
        else:
            rows.contact(ep, "outcome_6wk", status="expired")
    rows.commit()
    data = reports.build_report(db, clinic.id)
    step_rows = [r for r in report_rows.figure_rows(data) if r.injury == "pfps" and r.step == "outcome_6wk"]
    assert step_rows, "the step is reported"
    for row in step_rows:
        assert row.n != 14 and row.n_display != "14", row
        if row.metric in ("contacts_answered", "n_paired", "n"):
            assert row.value is None, row
