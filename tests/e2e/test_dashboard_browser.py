"""The practitioner dashboard in a real browser: log in, read the overview, filter by injury, open an injury,
download the CSV and the PDF. The real app (``create_app``) runs under uvicorn in a thread on SQLite; the
stack's Prefect server and flows are not needed (the dashboard only reads). Chromium is Debian's.

Screenshots: test-output/screenshots/dashboard-*.png (desktop and phone), cases-phone.png and
case-acknowledged-phone.png (the case pages on a 375 px phone).
"""

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlmodel import Session

from models import Clinic, ClinicCreate
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import CapturedMail, list_mail, start_capture
from needlecare.followup.questions import SurveyAnswers
from needlecare.intake.clinics import add_clinic
from needlecare.outcomes import report_pdf
from needlecare.outcomes import store as report_store
from needlecare.safety import alerts
from needlecare.staff import auth
from needlecare.surveys.responses import record_answer
from tests.conftest import free_port
from tests.e2e.axe import expect_no_violations
from tests.e2e.browser import PHONE, launch_chromium, screenshot, serve_app
from tests.records import make_contact, make_session
from tests.web.test_dashboard import ACHILLES, EMAIL, PASSWORD, PFPS, Cohort, build

pytestmark = pytest.mark.e2e

DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}, "locale": "en-US"}


@dataclass
class Env:
    base_url: str
    browser: Browser
    cohort: Cohort
    downloads: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("dashboard-browser")
    url = f"sqlite:///{root / 'app.db'}"
    database.upgrade(url)
    engine = database.get_engine(url)
    with Session(engine, expire_on_commit=False) as db:
        add_clinic(
            db,
            ClinicCreate(
                id="riverside-physio",
                name="Riverside Physio",
                email="front-desk@riverside.example",
                timezone="America/New_York",
            ),
            actor="test",
        )
        cohort = build(db, "riverside-physio")
        auth.create_user(db, "riverside-physio", EMAIL, "Dana Reyes", PASSWORD)
        # as the refresh-dashboard-figures flow would: the pages read these instead of computing
        now = utcnow()
        clinic = db.get(Clinic, "riverside-physio")
        assert clinic is not None
        report_store.refresh(db, clinic.id, report_store.standard_views(clinic, now), now)
    port = free_port()
    settings = Settings(
        env="test",
        data_dir=root,
        database_url=url,
        smtp_capture_port=free_port(),
        public_base_url=f"http://127.0.0.1:{port}",
    )
    try:
        with serve_app(settings, port) as base_url, sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                yield Env(base_url, browser, cohort, root / "downloads")
            finally:
                browser.close()
    finally:
        engine.dispose()


def open_page(env: Env, device: dict[str, Any]) -> Iterator[Page]:
    context = env.browser.new_context(**device, accept_downloads=True)
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(env: Env) -> Iterator[Page]:
    yield from open_page(env, DESKTOP)


@pytest.fixture
def phone(env: Env) -> Iterator[Page]:
    yield from open_page(env, PHONE)


def log_in(page: Page, env: Env, path: str = "/dashboard") -> None:
    page.goto(env.base_url + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_log_in_filter_by_injury_and_download(page: Page, env: Env) -> None:
    log_in(page, env)
    expect(page).to_have_url(env.base_url + "/dashboard")
    expect(page.get_by_role("heading", name="Outcome dashboard")).to_be_visible()
    # the headline across injuries: 40 of 52 paired patients improved (tests/web/test_dashboard_headline.py)
    headline = page.get_by_role("region", name=re.compile("Pain improved at the latest outcome survey"))
    expect(headline).to_contain_text("76.9 %")
    expect(headline).to_contain_text("(40 of 52)")
    expect(headline).to_contain_text("95 % CI")
    expect(headline).to_contain_text("n = 52 patients with a baseline and an answered outcome survey")
    expect_no_violations(page, "the dashboard overview with its headline")
    overview = page.get_by_role("table", name=re.compile("Outcomes at the 6-week progress survey"))
    achilles = overview.get_by_role("row", name=re.compile("Achilles tendinopathy"))
    expect(achilles).to_contain_text("71.2 %")  # 47 of 66 answered at 6 weeks
    expect(achilles).to_contain_text("n = 47")
    expect(overview.get_by_role("row", name=re.compile("patellofemoral", re.I))).to_contain_text("insufficient data")
    expect(page.get_by_role("table", name=re.compile("follow-ups without an answer"))).to_contain_text(
        env.cohort.chase_names[1]
    )
    screenshot(page, "dashboard-overview")

    page.get_by_label("Injury", exact=True).select_option(label="Achilles tendinopathy")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(rf"injury={ACHILLES}"))
    expect(page.locator("#filter-summary")).to_contain_text("Showing Achilles tendinopathy")
    rows = page.get_by_role("table", name=re.compile("Outcomes at")).locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Achilles tendinopathy")
    screenshot(page, "dashboard-filtered-achilles")

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    saved = csv_download.value
    assert re.fullmatch(
        rf"needlecare-riverside-physio-outcomes-{ACHILLES}-\d{{4}}-\d{{2}}-\d{{2}}\.csv", saved.suggested_filename
    )
    path = env.downloads / saved.suggested_filename
    saved.save_as(path)
    records = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert {r["injury"] for r in records} == {ACHILLES}
    rate = next(
        r for r in records if (r["section"], r["step"], r["metric"]) == ("follow_up", "outcome_6wk", "response_rate")
    )
    assert rate["display"] == "71.2 %"

    if not report_pdf.chromium_available():
        pytest.skip("no Chromium on the server's PATH to print the PDF with")
    with page.expect_download(timeout=120_000) as pdf_download:
        page.get_by_role("link", name="Download PDF").click()
    pdf = pdf_download.value
    assert pdf.suggested_filename.endswith(".pdf") and ACHILLES in pdf.suggested_filename
    pdf_path = env.downloads / pdf.suggested_filename
    pdf.save_as(pdf_path)
    assert pdf_path.read_bytes().startswith(b"%PDF")


def test_injury_page_shows_the_trajectory_chart(page: Page, env: Env) -> None:
    log_in(page, env)
    page.get_by_role("link", name="Achilles tendinopathy").first.click()
    expect(page).to_have_url(re.compile(rf"/dashboard/injury/{ACHILLES}"))
    chart = page.locator("#trajectory-chart svg[role=img]")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    table = page.get_by_role("table", name=re.compile("per time point"))
    expect(table.get_by_role("row", name=re.compile("6-week progress survey"))).to_contain_text("-2.8 points")
    screenshot(page, "dashboard-injury-achilles")


def test_an_injury_without_enough_answers_gets_a_sentence_not_an_empty_chart(page: Page, env: Env) -> None:
    log_in(page, env, f"/dashboard/injury/{PFPS}")  # 5 answers: every point is below the minimum
    expect(page.locator("#chart-empty")).to_have_text(
        "Not enough answers yet for this chart: the largest group has < 11 of 20."
    )
    expect(page.locator("main svg, #trajectory-chart")).to_have_count(0)
    expect_no_violations(page, "an injury page without a chart")
    screenshot(page, "dashboard-injury-no-chart")


def test_dashboard_is_readable_on_a_phone(phone: Page, env: Env) -> None:
    log_in(phone, env, f"/dashboard?injury={PFPS}")
    expect(phone.get_by_role("heading", name="Outcome dashboard")).to_be_visible()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], "wide tables scroll inside their own region, not the page"
    region = phone.get_by_role("region", name=re.compile("Outcomes at"))
    expect(region).to_be_visible()
    expect(region).to_contain_text("Runner's knee")
    screenshot(phone, "dashboard-phone")
    phone.goto(env.base_url + "/dashboard/nonresponders")
    expect(phone.get_by_role("heading", name="Patients to chase")).to_be_visible()
    expect(phone.get_by_role("table", name=re.compile("without an answer"))).to_contain_text(env.cohort.chase_names[0])
    screenshot(phone, "dashboard-nonresponders-phone")


NARROW_PHONE: dict[str, Any] = {**PHONE, "viewport": {"width": 375, "height": 812}}


@dataclass
class CasesEnv:
    base_url: str
    browser: Browser
    case_ids: list[int]
    alert_mails: list[CapturedMail]


@pytest.fixture(scope="module")
def cases_env(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasesEnv]:
    """A second app on its own database with three open cases (one per tier), in the same browser; their
    alerts went through the real SMTP capture (the clinic has no routes: its own email gets them)."""
    root = tmp_path_factory.mktemp("cases-browser")
    url = f"sqlite:///{root / 'app.db'}"
    port = free_port()
    settings = Settings(
        env="test",
        data_dir=root,
        database_url=url,
        smtp_capture_port=free_port(),
        public_base_url=f"http://127.0.0.1:{port}",
    )
    database.upgrade(url)
    engine = database.get_engine(url)
    with Session(engine, expire_on_commit=False) as db:
        add_clinic(
            db,
            ClinicCreate(
                id="riverside-physio",
                name="Riverside Physio",
                email="front-desk@riverside.example",
                timezone="America/New_York",
            ),
            actor="test",
        )
        auth.create_user(db, "riverside-physio", EMAIL, "Dana Reyes", PASSWORD)
        case_ids = []
        for n, answers in enumerate(
            [
                SurveyAnswers(soreness=8, redflags=["none"]),
                SurveyAnswers(soreness=2, bruise="large", redflags=["pus", "new_numbness"], free_text="numb foot"),
                SurveyAnswers(soreness=2, redflags=["breathless", "chest_pain"]),
            ],
            start=1,
        ):
            contact = make_contact(db, make_session(db, n), "check_24h")
            answered = record_answer(db, contact, answers, channel="web", now=utcnow())
            assert answered.outcome.case_id is not None
            case_ids.append(answered.outcome.case_id)
        capture = start_capture(settings.resolved_mail_capture_dir, port=settings.smtp_capture_port)
        try:
            assert alerts.send_due(db, now=utcnow(), settings=settings).sent == 3
        finally:
            capture.stop()
    mails = list_mail(settings.resolved_mail_capture_dir)
    try:
        with serve_app(settings, port) as base_url:
            yield CasesEnv(base_url, env.browser, case_ids, mails)
    finally:
        engine.dispose()


def _contrast(page: Page, selector: str) -> float:
    """WCAG contrast ratio of an element's text colour against its own background colour."""
    colours = page.locator(selector).evaluate("e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]")
    lum = []
    for colour in colours:
        channels = [int(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        lum.append(0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2])
    light, dark = max(lum), min(lum)
    return (light + 0.05) / (dark + 0.05)


def test_cases_pages_reflow_on_a_phone_and_confirm_an_acknowledgement(cases_env: CasesEnv) -> None:
    context = cases_env.browser.new_context(**NARROW_PHONE)
    context.set_default_timeout(20_000)
    try:
        phone = context.new_page()
        phone.goto(cases_env.base_url + "/cases")
        phone.get_by_label("Email").fill(EMAIL)
        phone.get_by_label("Password").fill(PASSWORD)
        phone.get_by_role("button", name=re.compile("log in", re.I)).click()
        expect(phone.get_by_role("heading", name="Escalation cases")).to_be_visible()
        table = phone.get_by_role("table", name=re.compile(r"3 case\(s\)"))
        expect(table).to_contain_text("Emergency")
        expect(table).to_contain_text("1-day check-in")
        expect(table).not_to_contain_text("SAME_DAY")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"/cases is {width} px wide on a 375 px phone"
        expect_no_violations(phone, "/cases on a phone")
        screenshot(phone, "cases-phone")

        emergency = cases_env.case_ids[2]
        phone.get_by_role("link", name=f"Case #{emergency}").click()
        expect(phone.get_by_role("heading", name=re.compile(f"Case #{emergency}"))).to_be_visible()
        expect(phone.locator("#session-context")).to_contain_text("Achilles tendinopathy")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        ratio = _contrast(phone, ".staffbar button")
        assert ratio >= 4.5, f"the Log out button's contrast is {ratio:.2f}:1"
        phone.get_by_role("button", name=re.compile("Acknowledge")).click()
        expect(phone.get_by_role("status")).to_have_text(re.compile(r"^Case acknowledged at \d\d:\d\d$"))
        expect(phone.locator("#case-status")).to_have_text("Acknowledged")
        expect_no_violations(phone, "the case page after acknowledging")
        screenshot(phone, "case-acknowledged-phone")

        phone.goto(cases_env.base_url + "/undelivered")
        expect(phone.get_by_role("heading", name="Undelivered messages")).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()


def test_the_alert_email_fits_a_phone_and_its_button_opens_the_case(cases_env: CasesEnv) -> None:
    [mail] = [m for m in cases_env.alert_mails if m.subject.startswith("EMERGENCY case #")]
    emergency = cases_env.case_ids[2]
    context = cases_env.browser.new_context(**NARROW_PHONE)
    try:
        phone = context.new_page()
        phone.set_content(mail.html)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the alert email is {width} px wide on a 375 px phone"
        button = phone.get_by_role("link", name=f"Open case #{emergency}")
        expect(button).to_have_attribute("href", f"{cases_env.base_url}/cases/{emergency}")
        box = button.bounding_box()
        assert box is not None and box["height"] >= 44, "a button-sized target"
        expect(phone.locator("body")).to_contain_text("opened an emergency case")
        screenshot(phone, "alert-email-phone")
    finally:
        context.close()
    assert f"{cases_env.base_url}/cases/{emergency}" in mail.text and "<" not in mail.text
