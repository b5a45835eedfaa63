"""The practitioner dashboard behind the login (needlecare/web/dashboard/), on SQLite and PostgreSQL.

Rows go straight into the tables (tests/outcome_rows.py) with numbers chosen so every figure checked below can
be worked out by hand: one Achilles cohort of 40 episodes whose 6-week survey was due, 25 of them answered.
"""

import csv
import html as html_lib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from models import Clinic, ClinicCreate, Notification, Patient
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.intake.clinics import add_clinic
from needlecare.outcomes import report_pdf
from needlecare.outcomes.nonresponders import list_nonresponders
from needlecare.staff import auth
from needlecare.web.app import create_app
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache
from tests.outcome_rows import T0, Ep, OutcomeRows

PASSWORD = "correct horse battery staple"
EMAIL = "dana@riverside.example"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ACHILLES = "achilles_tendinopathy"
PFPS = "pfps"
STEP = "outcome_6wk"


@dataclass(frozen=True)
class Cohort:
    practitioner_a: int
    practitioner_b: int
    chase_names: list[str]


def login(client: TestClient, email: str = EMAIL) -> None:
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token, page.text
    done = client.post("/login", data={"email": email, "password": PASSWORD, "csrf": token.group(1), "next": "/"})
    assert done.status_code == 303, done.text


@pytest.fixture
def client(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    auth.create_user(db, clinic.id, EMAIL, "Dana Reyes", PASSWORD)
    app = create_app(settings)
    # A page without stored figures waits for their computation: long enough here that every page shows figures
    # (tests/web/test_dashboard_snapshots.py covers the "computing" page with a budget of 0).
    setattr(app.state, WAIT_STATE, 60.0)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c
        report_cache(app).wait()


def answered_episodes(
    rows: OutcomeRows, n: int, *, injury: str, follow_up: int, practitioner: int, start: datetime
) -> None:
    """``n`` episodes with baseline pain 6 and an answered 6-week survey at pain ``follow_up``."""
    for _ in range(n):
        ep = rows.episode(injury, pain=6, started_at=start)
        rows.session(ep, practitioner_id=practitioner)
        rows.answer(ep, STEP, nprs_usual=follow_up)


def unanswered_episodes(rows: OutcomeRows, n: int, *, injury: str, practitioner: int, start: datetime) -> None:
    for _ in range(n):
        ep = rows.episode(injury, pain=6, started_at=start)
        rows.session(ep, practitioner_id=practitioner)
        rows.contact(ep, STEP, status="expired")


def chase(rows: OutcomeRows, ep: Ep, *, due: datetime, status: str, reminders: int) -> int:
    contact_id = rows.contact(ep, STEP, status=status, due_at=due)
    for sequence in range(reminders + 1):
        rows.db.add(
            Notification(
                idempotency_key=f"survey:{contact_id}:{sequence}",
                kind="survey",
                channel="email",
                contact_id=contact_id,
                sequence=sequence,
                patient_id=ep.patient_id,
                status="sent",
                due_at=due + timedelta(minutes=30 * sequence),  # reminders before "now"
                sent_at=due + timedelta(minutes=30 * sequence),
            )
        )
    rows.db.flush()
    return contact_id


def build(db: Session, clinic_id: str, *, start: datetime = T0) -> Cohort:
    """Achilles: practitioner A 13 answered at pain 2 (responders) + 12 at pain 5 + 15 unanswered (40 due);
    practitioner B 22 answered at pain 3 (a later cohort, 200 days on). PFPS: 5 answered (small cell).
    Plus three follow-ups to chase (two sent, one expired yesterday) and one expired long ago.
    The cohorts start at ``start`` (the fixed T0 unless a test needs them inside a period relative to today)."""
    rows = OutcomeRows(db, clinic_id)
    a = rows.practitioner("Alex Moreno")
    b = rows.practitioner("Bea Lindqvist")
    answered_episodes(rows, 13, injury=ACHILLES, follow_up=2, practitioner=a, start=start)
    answered_episodes(rows, 12, injury=ACHILLES, follow_up=5, practitioner=a, start=start)
    unanswered_episodes(rows, 15, injury=ACHILLES, practitioner=a, start=start)
    later = start + timedelta(days=200)
    answered_episodes(rows, 22, injury=ACHILLES, follow_up=3, practitioner=b, start=later)
    answered_episodes(rows, 5, injury=PFPS, follow_up=2, practitioner=b, start=start)
    now = utcnow()
    names = []
    to_chase = [(now - timedelta(days=1), "sent", 1), (now - timedelta(hours=2), "sent", 0)]
    to_chase.append((now - timedelta(days=3), "expired", 2))
    for i, (due, status, reminders) in enumerate(to_chase):
        ep = rows.episode(ACHILLES, started_at=now - timedelta(days=42 + i))
        rows.session(ep, practitioner_id=a)
        chase(rows, ep, due=due, status=status, reminders=reminders)
        patient = rows.db.get(Patient, ep.patient_id)
        assert patient is not None
        names.append(f"{patient.first_name} {patient.last_name}")
    old = rows.episode(ACHILLES, started_at=now - timedelta(days=120))
    rows.session(old, practitioner_id=a)
    chase(rows, old, due=now - timedelta(days=60), status="expired", reminders=1)
    rows.commit()
    return Cohort(practitioner_a=a, practitioner_b=b, chase_names=names)


def overview_cell(html: str, injury: str, figure: str) -> str:
    row = re.search(rf'<tr[^>]* data-injury="{injury}">(.*?)</tr>', html, re.S)
    assert row, f"no overview row for {injury}"
    cell = re.search(rf'<td[^>]* data-figure="{figure}"[^>]*>(.*?)</td>', row.group(1), re.S)
    assert cell, f"no {figure} cell for {injury}"
    return text_of(cell.group(1))


def text_of(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed, entities decoded."""
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


# ---- access -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/dashboard/injury/pfps",
        "/dashboard/nonresponders",
        "/dashboard/export.csv",
        "/dashboard/export.pdf",
    ],
)
def test_anonymous_users_are_sent_to_login(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


def test_another_clinics_data_never_appears(client: TestClient, db: Session) -> None:
    cohort = build(db, "riverside-physio")
    add_clinic(db, ClinicCreate(id="hillside", name="Hillside", email="h@hillside.example"), actor="test")
    auth.create_user(db, "hillside", "lee@hillside.example", "Lee", PASSWORD)
    login(client, "lee@hillside.example")
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'data-injury="' not in page.text and "No follow-up data for these filters yet." in page.text
    for name in cohort.chase_names:
        assert name not in page.text
    assert "Alex Moreno" not in page.text, "another clinic's practitioners are not offered"
    refused = client.get(f"/dashboard?practitioner={cohort.practitioner_a}")
    assert refused.status_code == 422 and "Alex Moreno" not in refused.text
    chase_page = client.get("/dashboard/nonresponders")
    assert chase_page.status_code == 200 and 'data-contact="' not in chase_page.text
    exported = client.get("/dashboard/export.csv")
    assert exported.status_code == 200
    assert [r for r in csv.DictReader(io.StringIO(exported.text))] == []
    injury = client.get(f"/dashboard/injury/{ACHILLES}")
    assert injury.status_code == 200 and "No follow-up data for Achilles tendinopathy" in injury.text


# ---- the overview -------------------------------------------------------------------------------------


def test_overview_shows_each_figure_with_its_n_and_response_rate(client: TestClient, db: Session) -> None:
    build(db, "riverside-physio")
    login(client)
    page = client.get(f"/dashboard?period=custom&until={(T0 + timedelta(days=100)).date().isoformat()}")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    # 40 due, 25 answered (15 not): 62.5 %
    assert overview_cell(html, ACHILLES, "response_rate").startswith("62.5 %")
    assert "n = 40" in overview_cell(html, ACHILLES, "response_rate")
    # change: 13 × (2 - 6) + 12 × (5 - 6) = -64 over 25 paired answers
    pain = overview_cell(html, ACHILLES, "pain_change")
    assert pain.startswith("-2.6 points") and "n = 25" in pain and "response 62.5 %" in pain and "95 % CI" in pain
    responders = overview_cell(html, ACHILLES, "pain_responders")
    assert responders.startswith("52.0 %") and "n = 25" in responders and "response 62.5 %" in responders
    # PFPS: 5 patients, every cell is suppressed with its display text
    assert overview_cell(html, PFPS, "response_rate").startswith("suppressed")
    assert "n = < 11" in overview_cell(html, PFPS, "response_rate")
    assert overview_cell(html, PFPS, "pain_change").startswith("insufficient data")
    assert "Alex Moreno" in html and "Bea Lindqvist" in html, "the practitioner select lists the clinic's staff"
    assert 'href="/cases"' in html and 'data-tier="EMERGENCY"' in html


def shows(text: str, number: int) -> bool:
    """Whether ``number`` stands in the text as a number of its own (not part of 30.5 or 130)."""
    return re.search(rf"(?<![\d.]){number}(?![\d.])", text) is not None


def test_no_n_gives_back_a_suppressed_answered_count(client: TestClient, db: Session) -> None:
    """30 due, 25 answered, 5 not: the 5 is hidden, so no page may show both the 30 due and the 25 answered (as a
    count, or as the paired n or the n of a mean, which equal it); 30 - 25 would give the 5 back."""
    rows = OutcomeRows(db, "riverside-physio")
    practitioner = rows.practitioner()
    answered_episodes(rows, 25, injury=ACHILLES, follow_up=2, practitioner=practitioner, start=T0)
    unanswered_episodes(rows, 5, injury=ACHILLES, practitioner=practitioner, start=T0)
    rows.commit()
    login(client)
    html = client.get("/dashboard").text
    assert overview_cell(html, ACHILLES, "response_rate").startswith("suppressed")
    overview = " ".join(overview_cell(html, ACHILLES, f) for f in ("response_rate", "pain_change", "pain_responders"))
    assert not (shows(overview, 30) and shows(overview, 25)), overview
    injury = client.get(f"/dashboard/injury/{ACHILLES}").text
    row = re.search(rf'<tr[^>]* data-step="{STEP}">(.*?)</tr>', injury, re.S)
    assert row is not None
    assert not (shows(text_of(row.group(1)), 30) and shows(text_of(row.group(1)), 25)), text_of(row.group(1))
    chart = re.search(r'<figure class="chart".*?</figure>', injury, re.S)
    assert chart is None or "n = 25" not in chart.group(0)


def test_filters_change_the_numbers(client: TestClient, db: Session) -> None:
    cohort = build(db, "riverside-physio")
    login(client)
    everyone = client.get("/dashboard").text
    # all Achilles episodes: 40 + 22 + 3 chased + 1 old due; 47 answered of 66 due at 6 weeks
    assert "n = 66" in overview_cell(everyone, ACHILLES, "response_rate")
    assert "n = 47" in overview_cell(everyone, ACHILLES, "pain_change")
    only_b = client.get(f"/dashboard?practitioner={cohort.practitioner_b}").text
    assert "n = 22" in overview_cell(only_b, ACHILLES, "pain_change")
    assert overview_cell(only_b, ACHILLES, "pain_change").startswith("-3.0 points")
    later = client.get(f"/dashboard?period=custom&since={(T0 + timedelta(days=150)).date().isoformat()}").text
    # B's 22 answers plus the 3 unanswered chased follow-ups: 3 not answered is a hidden cell, so is the 22
    later_pain = overview_cell(later, ACHILLES, "pain_change")
    assert later_pain.startswith("-3.0 points") and "n = suppressed" in later_pain and "22" not in later_pain
    pfps_only = client.get(f"/dashboard?injury={PFPS}").text
    assert f'data-injury="{PFPS}"' in pfps_only and f'data-injury="{ACHILLES}"' not in pfps_only
    assert f'value="{PFPS}" selected' in pfps_only


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [
        ("injury=knee", "injury", ACHILLES),
        ("practitioner=abc", "practitioner", "Alex Moreno"),
        ("period=forever", "period", "90d"),
        ("period=custom&since=2026-02-30", "since", ""),
        ("step=week_99", "step", STEP),
    ],
)
def test_a_bad_filter_is_a_422_page_listing_the_allowed_values(
    client: TestClient, db: Session, query: str, parameter: str, allowed: str
) -> None:
    build(db, "riverside-physio")
    login(client)
    for path in ("/dashboard", "/dashboard/nonresponders", "/dashboard/export.csv"):
        page = client.get(f"{path}?{query}")
        assert page.status_code == 422, (path, page.text)
        assert f'data-parameter="{parameter}"' in page.text
        assert allowed in page.text
    unknown = client.get("/dashboard/injury/knee")
    assert unknown.status_code == 404 and ACHILLES in unknown.text


def test_stale_figures_are_shown_while_they_are_recomputed(client: TestClient, db: Session) -> None:
    cohort = build(db, "riverside-physio")
    login(client)
    assert "n = 47" in overview_cell(client.get("/dashboard").text, ACHILLES, "pain_change")
    rows = OutcomeRows(db, "riverside-physio")
    answered_episodes(rows, 11, injury=ACHILLES, follow_up=3, practitioner=cohort.practitioner_b, start=T0)
    rows.commit()
    cache = report_cache(client.app)  # type: ignore[arg-type]
    assert "n = 47" in overview_cell(client.get("/dashboard").text, ACHILLES, "pain_change"), "still fresh"
    cache.seconds = 0
    stale = client.get("/dashboard").text
    assert "n = 47" in overview_cell(stale, ACHILLES, "pain_change"), "served at once from the stale entry"
    cache.wait()
    cache.seconds = 300
    assert "n = 58" in overview_cell(client.get("/dashboard").text, ACHILLES, "pain_change")
    export = client.get("/dashboard/export.csv").text
    assert ",pain_change,outcome_6wk,nprs_usual,n_paired,count,58," in export, "downloads use fresh figures"


# ---- injury page, non-responders ----------------------------------------------------------------------


def test_injury_page_has_the_trajectory_chart_and_a_row_per_time_point(client: TestClient, db: Session) -> None:
    build(db, "riverside-physio")
    login(client)
    page = client.get(f"/dashboard/injury/{ACHILLES}")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<figure class="chart" id="trajectory-chart"><svg' in html and 'role="img"' in html
    assert "cdn" not in html.lower() and "<script" not in html.lower()
    steps = re.findall(r'<tr[^>]* data-step="([a-z0-9_]+)"', html)
    assert steps[0] == "baseline" and STEP in steps
    row = re.search(rf'<tr[^>]* data-step="{STEP}">(.*?)</tr>', html, re.S)
    assert row is not None
    text = text_of(row.group(1))
    assert "-2.8 points" in text and "n = 47" in text and "response 71.2 %" in text  # 47 of 66 answered
    assert '<th scope="col">' in html and "<caption" in html


def test_nonresponders_are_listed_newest_first_with_reminders(client: TestClient, db: Session) -> None:
    cohort = build(db, "riverside-physio")
    login(client)
    page = client.get("/dashboard/nonresponders")
    assert page.status_code == 200
    listed = re.findall(r'<tr[^>]* data-contact="\d+">\s*<th scope="row"[^>]*>([^<]+)</th>', page.text)
    newest_first = [cohort.chase_names[1], cohort.chase_names[0], cohort.chase_names[2]]
    assert listed == newest_first, "due 2 h ago, 1 day ago, then expired 3 days ago; the 60-day-old one is left out"
    assert "1 to 3 of 3" in page.text
    cells = re.findall(r"<tr[^>]* data-contact=\"\d+\">.*?</tr>", page.text, re.S)
    assert [re.findall(r"<td[^>]*>(\d+)</td>", c) for c in cells] == [["0"], ["1"], ["2"]]
    assert "window closed" in cells[2] and "open until" in cells[0]
    dashboard = client.get("/dashboard").text
    assert "See all 3 follow-ups without an answer" in dashboard
    wider = client.get("/dashboard/nonresponders?days=90").text
    assert "1 to 4 of 4" in wider


def test_nonresponders_page_by_page(db: Session, clinic: Clinic) -> None:
    build(db, clinic.id)
    now = utcnow()
    first = list_nonresponders(db, clinic.id, now=now, limit=2)
    second = list_nonresponders(db, clinic.id, now=now, limit=2, offset=2)
    assert first.total == second.total == 3
    assert len(first.rows) == 2 and first.has_next and not first.has_previous
    assert len(second.rows) == 1 and second.has_previous and not second.has_next
    assert first.rows[0].due_at > first.rows[1].due_at > second.rows[0].due_at
    other = list_nonresponders(db, clinic.id, now=now, injury=PFPS)
    assert other.total == 0
    with pytest.raises(ValueError):
        list_nonresponders(db, clinic.id, now=datetime(2026, 1, 1))  # naive


# ---- downloads ----------------------------------------------------------------------------------------


def test_csv_download_holds_the_figures_the_page_shows(client: TestClient, db: Session) -> None:
    build(db, "riverside-physio")
    login(client)
    html = client.get("/dashboard").text
    response = client.get("/dashboard/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["cache-control"] == "no-store"
    today = datetime.now(UTC).date().isoformat()
    assert response.headers["content-disposition"] == (
        f'attachment; filename="needlecare-riverside-physio-outcomes-{today}.csv"'
    )
    rows = {
        (r["injury"], r["section"], r["step"], r["measure"], r["metric"]): r
        for r in csv.DictReader(io.StringIO(response.text))
    }
    mean = rows[(ACHILLES, "pain_change", STEP, "nprs_usual", "mean_change")]
    rate = rows[(ACHILLES, "follow_up", STEP, "", "response_rate")]
    responders = rows[(ACHILLES, "pain_change", STEP, "nprs_usual", "responder_rate")]
    assert overview_cell(html, ACHILLES, "pain_change").startswith(f"{mean['display']} points")
    assert f"n = {mean['n_display']}" in overview_cell(html, ACHILLES, "pain_change")
    assert overview_cell(html, ACHILLES, "response_rate").startswith(rate["display"])
    assert overview_cell(html, ACHILLES, "pain_responders").startswith(responders["display"])
    small = rows[(PFPS, "follow_up", STEP, "", "contacts_due")]
    assert small["value"] == "" and small["display"] == "< 11"
    only_pfps = client.get(f"/dashboard/export.csv?injury={PFPS}")
    assert f"outcomes-{PFPS}-{today}.csv" in only_pfps.headers["content-disposition"]
    assert {r["injury"] for r in csv.DictReader(io.StringIO(only_pfps.text))} == {PFPS}


@pytest.mark.skipif(not report_pdf.chromium_available(), reason="no Chromium on PATH to print the PDF with")
def test_pdf_download_is_a_pdf(client: TestClient, db: Session) -> None:
    build(db, "riverside-physio")
    login(client)
    response = client.get(f"/dashboard/export.pdf?injury={ACHILLES}")
    assert response.status_code == 200, response.text[:500]
    assert response.content.startswith(b"%PDF")
    assert response.headers["content-type"] == "application/pdf"
    assert re.fullmatch(
        rf'attachment; filename="needlecare-riverside-physio-outcomes-{ACHILLES}-\d{{4}}-\d{{2}}-\d{{2}}\.pdf"',
        response.headers["content-disposition"],
    )


def test_pdf_without_chromium_is_a_503_page(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv(report_pdf.CHROMIUM_ENV, str(tmp_path / "no-such-browser"))
    login(client)
    response = client.get("/dashboard/export.pdf")
    assert response.status_code == 503
    assert "No PDF printer" in response.text and "/dashboard/export.csv" in response.text
