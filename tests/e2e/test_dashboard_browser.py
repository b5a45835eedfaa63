"""The practitioner dashboard in a real browser: log in, read the overview, filter by injury, open an injury,
download the CSV and the PDF. The real app (``create_app``) runs under uvicorn in a thread on SQLite; the
stack's Prefect server and flows are not needed (the dashboard only reads). Chromium is Debian's.

Screenshots: test-output/screenshots/dashboard-*.png (desktop and phone).
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
from needlecare.intake.clinics import add_clinic
from needlecare.outcomes import report_pdf
from needlecare.outcomes import store as report_store
from needlecare.staff import auth
from tests.conftest import free_port
from tests.e2e.browser import PHONE, launch_chromium, screenshot, serve_app
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
