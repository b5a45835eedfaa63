"""The dashboard's headline across injuries, its default time point, the "n of m" text of a figure below its minimum
and the injury chart that is never drawn empty, on SQLite and PostgreSQL.

Cohorts are tests/web/test_dashboard.py's ``build`` or written here; every expected number is worked out by hand
in the test.
"""

import html as html_lib
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from scipy import stats as sps
from sqlmodel import Session

from models import Clinic
from needlecare.core.settings import Settings
from needlecare.outcomes import reports
from needlecare.staff import auth
from needlecare.web.app import create_app
from needlecare.web.dashboard.filters import DEFAULT_STEP
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache
from needlecare.web.dashboard.views import default_step
from tests.outcome_rows import T0, OutcomeRows
from tests.web.test_dashboard import ACHILLES, EMAIL, PASSWORD, PFPS, build, login, overview_cell, text_of

PATIENTS = "patients with a baseline and an answered outcome survey"


@pytest.fixture
def client(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    """A logged-in client whose pages wait for their figures."""
    auth.create_user(db, clinic.id, EMAIL, "Dana Reyes", PASSWORD)
    app = create_app(settings)
    setattr(app.state, WAIT_STATE, 60.0)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        login(c)
        yield c
        report_cache(app).wait()


def headline_of(page: str) -> str:
    found = re.search(r'<section class="headline" id="headline".*?</section>', page, re.S)
    assert found, "no headline section"
    return text_of(found.group(0))


def answered(rows: OutcomeRows, n: int, step: str, pain: int, *, injury: str = ACHILLES) -> None:
    for _ in range(n):
        ep = rows.episode(injury, pain=6)
        rows.session(ep)
        rows.answer(ep, step, nprs_usual=pain)


def expired(rows: OutcomeRows, n: int, step: str, *, injury: str = ACHILLES) -> None:
    for _ in range(n):
        ep = rows.episode(injury, pain=6)
        rows.session(ep)
        rows.contact(ep, step, status="expired")


# ---- the headline -------------------------------------------------------------------------------------------


def test_the_overview_opens_with_the_headline_across_injuries(client: TestClient, db: Session, clinic: Clinic) -> None:
    """``build``, one patient per episode, every survey at 6 weeks, baseline pain 6. Due: Achilles 13 + 12 + 15
    (A) + 22 (B) + 3 to chase + 1 old; PFPS 5 -> 71. Answered: 13 + 12 + 22 + 5 = 52, all paired. Improved (drop
    >= 2 and >= 30 % of 6): pain 2 (13 + 5) and pain 3 (22) -> 40; pain 5 (12) not."""
    build(db, clinic.id)
    page = client.get("/dashboard")
    assert page.status_code == 200, page.text
    assert page.text.index('id="headline"') < page.text.index('id="overview-heading"')
    text = headline_of(page.text)
    low, high = sps.binomtest(40, 52).proportion_ci(method="wilson")
    assert "Pain improved at the latest outcome survey: all injuries" in text
    assert f"{100 * 40 / 52:.1f} % of patients (40 of 52) had improved past the pain responder threshold" in text
    assert f"95 % CI {100 * low:.1f} to {100 * high:.1f} %" in text
    assert f"n = 52 {PATIENTS}" in text
    assert f"Response rate {100 * 52 / 71:.1f} % (52 of 71 patients due an outcome survey answered" in text
    # an injury's overview read out of the all-injuries snapshot says whose headline it shows
    achilles = headline_of(client.get(f"/dashboard?injury={ACHILLES}").text)
    assert "Pain improved at the latest outcome survey: all injuries" in achilles and "(40 of 52)" in achilles


def test_a_headline_below_the_minimum_says_how_many_more_patients_it_needs(
    client: TestClient, db: Session, clinic: Clinic
) -> None:
    """14 improved of 14 answered, 11 expired: 25 due; 14 paired is below 20."""
    rows = OutcomeRows(db, clinic.id)
    answered(rows, 14, "outcome_6wk", 2)
    expired(rows, 11, "outcome_6wk")
    rows.commit()
    html = client.get("/dashboard").text
    text = headline_of(html)
    assert f"Not shown yet: 14 of 20 {PATIENTS}, 6 more needed." in text
    assert "95 % CI" not in text and "Response rate 56.0 % (14 of 25 patients" in text
    # the same rule reads the per-injury cells: "14 of 20 paired answers" instead of a bare "insufficient data"
    pain = overview_cell(html, ACHILLES, "pain_change")
    assert (
        pain.startswith("insufficient data") and "n = 14" in pain and "14 of 20 paired answers, 6 more needed" in pain
    )
    responders = overview_cell(html, ACHILLES, "pain_responders")
    assert "14 of 20 paired answers, 6 more needed" in responders


def test_a_small_cell_says_what_it_needs_without_its_hidden_count(client: TestClient, db: Session) -> None:
    build(db, "riverside-physio")
    pfps = client.get(f"/dashboard?injury={PFPS}").text  # first: computed for PFPS alone
    assert "Pain improved at the latest outcome survey: Runner's knee (patellofemoral pain)" in headline_of(pfps)
    assert f"Not shown yet: < 11 of 20 {PATIENTS}, at least 10 more needed." in headline_of(pfps)
    cell = overview_cell(pfps, PFPS, "pain_change")
    assert cell.startswith("insufficient data") and "< 11 of 20 paired answers, at least 10 more needed" in cell
    assert not re.search(r"\d", cell.replace("< 11", "").replace("of 20", "").replace("at least 10", ""))


# ---- the default time point ---------------------------------------------------------------------------------


def test_the_overview_defaults_to_the_outcome_survey_with_data(client: TestClient, db: Session, clinic: Clinic) -> None:
    """Achilles: 25 paired at 6 weeks, 22 at 12 weeks; PFPS: 5 at 6 weeks, 21 at 12 weeks. Two injuries reach the
    20 paired answers at 12 weeks, one at 6 weeks: 12 weeks."""
    rows = OutcomeRows(db, clinic.id)
    answered(rows, 25, "outcome_6wk", 2)
    answered(rows, 22, "outcome_12wk", 3)
    answered(rows, 5, "outcome_6wk", 2, injury=PFPS)
    answered(rows, 21, "outcome_12wk", 5, injury=PFPS)
    rows.commit()
    with Session(db.get_bind()) as own:
        data = reports.build_report(own, clinic.id)
    assert default_step(data, None) == "outcome_12wk"
    assert default_step(data, ACHILLES) == "outcome_12wk", "both reach 20: the later one"
    html = client.get("/dashboard").text
    caption = re.search(r'<caption id="overview-caption">(.*?)</caption>', html, re.S)
    assert caption and text_of(caption.group(1)).startswith(
        "Outcomes at the 12-week progress survey (the outcome survey with the most data"
    )
    assert '<option value="outcome_12wk" selected>' in html and "n = 21" in overview_cell(html, PFPS, "pain_change")
    chosen = client.get("/dashboard?step=outcome_6wk").text
    caption = re.search(r'<caption id="overview-caption">(.*?)</caption>', chosen, re.S)
    assert caption and text_of(caption.group(1)).startswith("Outcomes at the 6-week progress survey Pain:")
    assert '<option value="outcome_6wk" selected>' in chosen and "n = 25" in overview_cell(
        chosen, ACHILLES, "pain_change"
    )


def test_below_every_minimum_the_default_is_the_survey_with_the_most_paired_answers(
    db: Session, clinic: Clinic
) -> None:
    rows = OutcomeRows(db, clinic.id)
    with Session(db.get_bind()) as own:
        assert default_step(reports.build_report(own, clinic.id), None) == DEFAULT_STEP, "no data: 6 weeks"
    expired(rows, 30, "outcome_12wk")
    expired(rows, 12, "outcome_4wk")
    rows.commit()
    with Session(db.get_bind()) as own:
        assert default_step(reports.build_report(own, clinic.id), None) == "outcome_12wk", "no answer: most due"
    answered(rows, 8, "outcome_4wk", 2)
    answered(rows, 5, "outcome_6wk", 2)
    answered(rows, 4, "outcome_6wk", 2, injury=PFPS)
    answered(rows, 3, "outcome_12wk", 2)
    rows.commit()
    with Session(db.get_bind()) as own:
        data = reports.build_report(own, clinic.id)
    # paired: 4 weeks 8, 6 weeks 5 + 4 = 9, 12 weeks 3: none reaches 20, so the most paired answers
    assert default_step(data, None) == "outcome_6wk"
    assert default_step(data, ACHILLES) == "outcome_4wk", "Achilles alone: 8 at 4 weeks, 5 at 6"
    answered(rows, 1, "outcome_4wk", 2, injury=PFPS)  # 4 weeks 9 = 6 weeks 9: the later one
    rows.commit()
    with Session(db.get_bind()) as own:
        assert default_step(reports.build_report(own, clinic.id), None) == "outcome_6wk"


# ---- no chart without bars ----------------------------------------------------------------------------------


def test_an_injury_whose_points_are_all_suppressed_gets_a_sentence_not_a_chart(client: TestClient, db: Session) -> None:
    build(db, "riverside-physio")  # PFPS: 5 episodes, 5 answers
    page = client.get(f"/dashboard/injury/{PFPS}")
    assert page.status_code == 200
    assert "<svg" not in page.text and 'id="trajectory-chart"' not in page.text, "no chart element without a point"
    empty = re.search(r'<p id="chart-empty">(.*?)</p>', page.text, re.S)
    assert empty and html_lib.unescape(empty.group(1)) == (
        "Not enough answers yet for this chart: the largest group has < 11 of 20."
    )


def test_the_sentence_gives_the_largest_groups_count_when_it_may_be_shown(
    client: TestClient, db: Session, clinic: Clinic
) -> None:
    """15 Achilles episodes with a baseline; 12 answered at 6 weeks beside 3 not (so the 12 is hidden)."""
    rows = OutcomeRows(db, clinic.id)
    answered(rows, 12, "outcome_6wk", 3)
    expired(rows, 3, "outcome_6wk")
    rows.commit()
    page = client.get(f"/dashboard/injury/{ACHILLES}").text
    assert "<svg" not in page
    empty = re.search(r'<p id="chart-empty">(.*?)</p>', page, re.S)
    assert empty and empty.group(1) == "Not enough answers yet for this chart: the largest group has 15 of 20."
    row = re.search(r'<tr[^>]* data-step="outcome_6wk">(.*?)</tr>', page, re.S)
    assert row and "fewer than 20 paired answers" in text_of(row.group(1)) and "12" not in text_of(row.group(1))
    # once a mean can be shown, the chart is drawn (baseline: 20 episodes)
    expired(rows, 5, "outcome_12wk")
    rows.commit()
    report_cache(client.app).seconds = 0  # type: ignore[arg-type]
    client.get(f"/dashboard/injury/{ACHILLES}")
    report_cache(client.app).wait()  # type: ignore[arg-type]
    report_cache(client.app).seconds = 900  # type: ignore[arg-type]
    drawn = client.get(f"/dashboard/injury/{ACHILLES}").text
    assert '<figure class="chart" id="trajectory-chart"><svg' in drawn and 'id="chart-empty"' not in drawn


def test_a_patient_with_two_episodes_counts_once(client: TestClient, db: Session, clinic: Clinic) -> None:
    """A patient with an Achilles episode (6 weeks: pain 5, not improved) and a later PFPS one (4 weeks: pain 2,
    improved) counts once, improved; 20 more patients at pain 5 make the share showable: 1 of 21 is hidden (a
    count of 1), 21 paired is shown."""
    rows = OutcomeRows(db, clinic.id)
    first = rows.episode(ACHILLES, pain=6)
    rows.session(first)
    rows.answer(first, "outcome_6wk", nprs_usual=5)
    later = rows.episode(PFPS, pain=6, started_at=T0 + timedelta(days=30), patient_id=first.patient_id)
    rows.session(later)
    rows.answer(later, "outcome_4wk", nprs_usual=2)
    answered(rows, 20, "outcome_6wk", 5)
    rows.commit()
    text = headline_of(client.get("/dashboard").text)
    assert f"n = 21 {PATIENTS}" in text and "Hidden: the number of patients who improved" in text
    assert "Response rate 100.0 % (21 of 21 patients" in text
