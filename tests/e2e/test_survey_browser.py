"""The patient survey in a real browser on a phone-sized screen, entered through the link in the sent email.

Each test records its own session, lets the outbox send the check-in email (``run_pass`` as of 24 h / 72 h
after the session) to a local SMTP sink, reads the link from the email's text part and answers the survey
in Chromium against the real web app (uvicorn, SQLite). Screenshots: test-output/screenshots/<test>.png.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import Engine
from sqlmodel import Session, select

from models import ClinicCreate, Contact, ContactStatus, EscalationCase, SurveyResponse
from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.core.tokens import make_token
from needlecare.dev.mailcapture import start_capture
from needlecare.followup.outbox import run_pass
from needlecare.followup.questions import GROC_LABELS
from needlecare.intake import ingest
from needlecare.intake.clinics import add_clinic
from needlecare.safety.advice import EMERGENCY_TITLE
from tests.conftest import CLINIC_SECRET, free_port
from tests.e2e.axe import expect_no_violations
from tests.e2e.browser import PHONE, launch_chromium, screenshot, serve_app, survey_link
from tests.factories import PATIENT_LAST, PATIENT_NAME, event_body

pytestmark = pytest.mark.e2e

CLINIC_TZ = "America/New_York"
DAY_1, DAY_3 = "1-day check-in", "3-day check-in"
CHECK_24H_FIELDS = {"soreness", "nprs_worst", "bruise", "redflags", "fainted", "free_text"}
CHECK_72H_FIELDS = {"soreness", "nprs_usual", "nprs_worst", "bruise", "redflags", "ran", "run_pain", "groc15"}
# Legends of the questions (the accessible names of their fieldsets).
SORENESS = re.compile(r"^How sore are the spots")
BRUISE = re.compile(r"^Do you have a bruise")
REDFLAGS = re.compile(r"^Since your session, have you had any of these")
FAINTED = re.compile(r"^Did you faint")
NPRS_USUAL = re.compile(r"^On average over the last 24 hours, how much has your injury hurt")
NPRS_WORST = re.compile(r"^What was the worst pain")
RAN = re.compile(r"^Have you been for a run")
RUN_PAIN = re.compile(r"^If you ran: how much did your injury hurt")
GROC = re.compile(r"^Compared with before your last session, how is your injury now\?")
SEND = "Send my answers"
BRUISE_MESSAGE = "Choose whether you have a bruise where the needles went in, and how big it is"
FAINTED_MESSAGE = "Choose “Yes” if you fainted or felt faint, or “No” if you did not"
MIN_TAP = 44  # px, WCAG 2.5.5 / platform guidelines


@dataclass
class Env:
    settings: Settings
    engine: Engine
    base_url: str
    mail_dir: Path
    browser: Browser


@dataclass
class Visit:
    """One recorded session of its own patient."""

    name: str
    session_id: int
    email: str
    completed_at: datetime


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("survey-browser")
    url = f"sqlite:///{root / 'app.db'}"
    database.upgrade(url)
    engine = database.get_engine(url)
    with Session(engine) as db:
        add_clinic(
            db,
            ClinicCreate(
                id="riverside-physio",
                name="Riverside Physio",
                email="front-desk@riverside.example",
                phone="+15550100200",
                timezone=CLINIC_TZ,
            ),
            actor="test",
            secret=CLINIC_SECRET,
        )
    web_port, smtp_port = free_port(), free_port()
    settings = Settings(
        env="test",
        data_dir=root,
        database_url=url,
        smtp_capture_port=smtp_port,
        public_base_url=f"http://127.0.0.1:{web_port}",
    )
    capture = start_capture(settings.resolved_mail_capture_dir, port=smtp_port)
    try:
        with serve_app(settings, web_port) as base_url, sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                yield Env(settings, engine, base_url, settings.resolved_mail_capture_dir, browser)
            finally:
                browser.close()
    finally:
        capture.stop()
        engine.dispose()


@pytest.fixture
def page(env: Env) -> Iterator[Page]:
    context = env.browser.new_context(**PHONE)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Any:
    """``shot()`` saves <test-name>.png, ``shot("suffix")`` <test-name>-suffix.png."""

    def take(suffix: str = "") -> Path:
        page.wait_for_timeout(400)  # let the touch highlight of the last tap fade
        return screenshot(page, request.node.name + (f"-{suffix}" if suffix else ""))

    return take


# ---- set-up helpers -----------------------------------------------------------------------------------


def session_end() -> datetime:
    """The latest local noon in the patient's zone (at least 10 min ago): +24 h and +72 h then fall in the
    daytime, outside quiet hours, and the 24 h window (closing at +48 h) is still open in real time."""
    here = (utcnow() - timedelta(minutes=10)).astimezone(ZoneInfo(CLINIC_TZ))
    noon = here.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon > here:
        noon -= timedelta(days=1)
    return noon.astimezone(UTC)


def record_visit(env: Env, name: str, **overrides: Any) -> Visit:
    email = f"sam.{name}@example.org"
    completed_at = session_end()
    body = event_body(
        1,
        external_session_id=f"BROWSER-{name}",
        completed_at=completed_at.isoformat(),
        patient__external_id=f"BROWSER-PT-{name}",
        patient__email=email,
        **overrides,
    )
    with Session(env.engine) as db:
        recorded = ingest.record(db, ingest.validate(body), actor="test")
    assert recorded.created
    return Visit(name, recorded.session_id, email, completed_at)


def send_due(env: Env, visit: Visit, hours: int) -> None:
    """One outbox pass as of ``hours`` after the session: plans, opens and sends what is due."""
    with Session(env.engine, expire_on_commit=False) as db:
        result = run_pass(db, now=visit.completed_at + timedelta(hours=hours), settings=env.settings)
    assert result.failed == 0, result


def emailed_link(env: Env, visit: Visit, step_title: str) -> str:
    link = survey_link(env.mail_dir, visit.email, step_title)
    assert link.startswith(env.base_url + "/s/"), link
    return link


def contact_of(env: Env, visit: Visit, step_id: str) -> Contact:
    with Session(env.engine, expire_on_commit=False) as db:
        contact = db.exec(
            select(Contact).where(Contact.session_id == visit.session_id, Contact.step_id == step_id)
        ).one()
    return contact


def response_for(env: Env, contact: Contact) -> SurveyResponse | None:
    with Session(env.engine, expire_on_commit=False) as db:
        return db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact.id)).first()


# ---- page helpers -------------------------------------------------------------------------------------


def question(page: Page, legend: re.Pattern[str]) -> Locator:
    """A question's fieldset, found by its legend (its accessible name)."""
    return page.get_by_role("group", name=legend)


def tap_choice(page: Page, legend: re.Pattern[str], choice: str | re.Pattern[str], role: str = "radio") -> None:
    """Tap the label of one option, as a thumb would, and check it took."""
    group = question(page, legend)
    control = group.get_by_role(role, name=choice, exact=True)  # type: ignore[arg-type]
    # ``has`` is matched inside each label, so it starts from the page, not from the group.
    group.locator("label").filter(has=page.get_by_role(role, name=choice, exact=True)).tap()  # type: ignore[arg-type]
    expect(control).to_be_checked()


def field_names(page: Page) -> set[str]:
    return set(page.eval_on_selector_all("form [name]", "els => els.map(e => e.name)"))


def fill_24h(page: Page, *, fainted: str | None = "No", free_text: str = "", flag: str = "None of these") -> None:
    tap_choice(page, SORENESS, "3")
    tap_choice(page, NPRS_WORST, "2")
    tap_choice(page, BRUISE, "A small bruise")
    tap_choice(page, REDFLAGS, flag, role="checkbox")
    if fainted:
        tap_choice(page, FAINTED, fainted)
    if free_text:
        page.get_by_label("Your message").fill(free_text)


def submit(page: Page) -> int:
    """Tap the send button; returns the status of the page it leads to, once that page has loaded."""
    with page.expect_navigation(wait_until="load") as navigation:
        page.get_by_role("button", name=SEND).tap()
    response = navigation.value
    assert response is not None and response.request.method == "POST"
    return response.status


def visible_text(page: Page) -> str:
    return page.locator("body").inner_text()


# ---- tests --------------------------------------------------------------------------------------------


def test_24h_check_from_the_email_link(env: Env, page: Page, shot: Any) -> None:
    visit = record_visit(env, "answer24")
    send_due(env, visit, 24)
    link = emailed_link(env, visit, DAY_1)

    response = page.goto(link)
    assert response is not None and response.status == 200
    assert response.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", level=1)).to_have_text(DAY_1)
    expect(page.get_by_text(f"Hi {PATIENT_NAME}, thank you")).to_be_visible()
    # Only this step's questions: no pain scales, no global rating of change.
    assert field_names(page) == CHECK_24H_FIELDS
    expect(question(page, GROC)).to_have_count(0)
    expect(page.get_by_text("Compared with")).to_have_count(0)
    for legend in (SORENESS, NPRS_WORST, BRUISE, REDFLAGS, FAINTED):
        expect(question(page, legend)).to_be_visible()
    expect(page.get_by_label("Short of breath")).to_be_visible()  # shown after lower-limb needling too

    fill_24h(page, free_text="Calf a bit stiff on the stairs.")
    assert submit(page) == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    expect(page.get_by_text("Your answers are saved with your record.")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)  # nothing to act on
    shot()

    contact = contact_of(env, visit, "check_24h")
    assert contact.status == ContactStatus.ANSWERED.value
    stored = response_for(env, contact)
    assert stored is not None
    assert (stored.channel, stored.soreness, stored.bruise, stored.redflags, stored.fainted) == (
        "web",
        3,
        "small",
        ["none"],
        False,
    )
    assert stored.free_text == "Calf a bit stiff on the stairs."
    assert stored.advice_tier is None

    # The same link again: already answered, and it says so.
    again = page.goto(link)
    assert again is not None and again.status == 409
    expect(page.get_by_role("heading", level=1)).to_have_text("Your answers were already received")


def test_missing_answer_is_shown_beside_its_field_and_typing_is_kept(env: Env, page: Page, shot: Any) -> None:
    visit = record_visit(env, "missing")
    send_due(env, visit, 24)
    page.goto(emailed_link(env, visit, DAY_1))

    typed = "Needle spot on the left calf is itchy."
    fill_24h(page, fainted=None, free_text=typed)
    assert submit(page) == 422

    fainted = question(page, FAINTED)
    error = page.locator("#err-fainted")
    expect(error).to_have_text("Error: " + FAINTED_MESSAGE)
    # Beside the field: inside its fieldset, between the question and the choices, and announced with it.
    expect(fainted.locator("#err-fainted")).to_have_count(1)
    expect(fainted).to_have_attribute("aria-describedby", re.compile(r"\berr-fainted\b"))
    expect(fainted).to_have_accessible_description(re.compile(re.escape(FAINTED_MESSAGE)))
    legend_box, error_box = fainted.locator("legend").bounding_box(), error.bounding_box()
    first_choice = fainted.get_by_role("radio", name="Yes").bounding_box()
    assert legend_box and error_box and first_choice
    assert legend_box["y"] < error_box["y"] < first_choice["y"]
    for choice in ("Yes", "No"):
        expect(fainted.get_by_role("radio", name=choice)).to_have_attribute("aria-invalid", "true")
    # The summary at the top says what to do and links to the question; no other field is flagged.
    summary = page.get_by_role("alert").filter(has_text="There is a problem")
    expect(summary.get_by_role("link", name=FAINTED_MESSAGE)).to_have_attribute("href", "#fainted-0")
    expect(page.locator("p.error")).to_have_count(1)
    # What was typed and tapped elsewhere is still there.
    expect(page.get_by_label("Your message")).to_have_value(typed)
    expect(question(page, SORENESS).get_by_role("radio", name="3", exact=True)).to_be_checked()
    expect(page.get_by_label("A small bruise")).to_be_checked()
    expect(page.get_by_label("None of these")).to_be_checked()
    shot()
    contact = contact_of(env, visit, "check_24h")
    assert response_for(env, contact) is None

    # Answer the missing question: the kept answers go through with it.
    tap_choice(page, FAINTED, "No")
    assert submit(page) == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    stored = response_for(env, contact)
    assert stored is not None
    assert (stored.free_text, stored.soreness, stored.bruise, stored.fainted) == (typed, 3, "small", False)


def test_error_summary_takes_focus_and_leads_to_the_question(env: Env, page: Page, shot: Any) -> None:
    """GOV.UK's pattern: "Error:" in the title, the summary focused as the page loads, each link to its question."""
    visit = record_visit(env, "summary")
    send_due(env, visit, 24)
    page.goto(emailed_link(env, visit, DAY_1))
    expect(page).to_have_title(DAY_1)
    tap_choice(page, SORENESS, "2")
    tap_choice(page, NPRS_WORST, "2")
    tap_choice(page, REDFLAGS, "None of these", role="checkbox")
    assert submit(page) == 422

    expect(page).to_have_title(f"Error: {DAY_1}")
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_be_in_viewport()
    expect(summary.get_by_role("heading", level=2)).to_have_text("There is a problem")
    links = summary.get_by_role("link")
    expect(links).to_have_text([BRUISE_MESSAGE, FAINTED_MESSAGE])
    shot("summary")

    # The second link: focus goes to the first choice of "Did you faint…", with its question in view.
    links.nth(1).tap()
    first_choice = question(page, FAINTED).get_by_role("radio", name="Yes")
    expect(first_choice).to_be_focused()
    expect(question(page, FAINTED).locator("legend")).to_be_in_viewport()
    expect(page.locator("#err-fainted")).to_be_in_viewport()
    shot("followed")

    # The first link, by keyboard from the summary.
    summary.focus()
    page.keyboard.press("Tab")
    expect(links.nth(0)).to_be_focused()
    page.keyboard.press("Enter")
    expect(question(page, BRUISE).get_by_role("radio", name="No bruise")).to_be_focused()


def test_red_flag_shows_emergency_advice_at_once(env: Env, page: Page, shot: Any) -> None:
    visit = record_visit(env, "redflag")
    send_due(env, visit, 24)
    page.goto(emailed_link(env, visit, DAY_1))

    # Only the red flag ticked (and a message typed), the rest left empty: the advice comes first, the red flag
    # is saved and alerted, and the rest of the form comes back to finish.
    tap_choice(page, REDFLAGS, "Short of breath", role="checkbox")
    page.get_by_label("Your message").fill("Tight chest since lunch")
    assert submit(page) == 422
    advice = page.locator("section.advice")
    expect(advice).to_have_attribute("role", "alert")
    expect(advice.get_by_role("heading")).to_have_text(EMERGENCY_TITLE)
    expect(advice).to_contain_text("Do not wait for a reply from the clinic.")
    expect(advice).not_to_contain_text("Your answers are saved with your record.")
    expect(advice).not_to_contain_text("your clinic has not been sent an alert")
    expect(advice).to_contain_text("The warning signs you ticked are saved with your record.")
    expect(advice).to_contain_text("We are sending your clinic an alert about them. It may not be read straight away.")
    expect(advice).to_contain_text("Your other answers are not saved yet")
    expect(advice.get_by_role("link", name="Call 911")).to_have_attribute("href", "tel:911")
    box = advice.bounding_box()
    assert box is not None and box["y"] < 100, "the advice is the first thing on the page"
    expect(page).to_have_title(f"Error: {DAY_1}")
    expect(page.locator("#error-summary")).not_to_be_focused()  # the focus does not scroll the advice away
    # soreness, worst pain, bruise, fainted
    expect(page.locator("#error-summary").get_by_role("link")).to_have_count(4)
    assert page.evaluate("window.scrollY") == 0
    expect(page.get_by_label("Short of breath")).to_be_checked()
    expect(page.get_by_label("Your message")).to_have_value("Tight chest since lunch")
    shot("partial-saved")
    contact = contact_of(env, visit, "check_24h")
    partial = response_for(env, contact)
    assert partial is not None and partial.redflags == ["breathless"] and partial.soreness is None
    assert partial.free_text == "Tight chest since lunch"
    with Session(env.engine) as db:
        [case] = db.exec(select(EscalationCase).where(EscalationCase.contact_id == contact.id)).all()
    assert case.tier == "EMERGENCY" and case.response_id == partial.id
    assert contact_of(env, visit, "check_24h").status == ContactStatus.SENT.value, "still open to finish"

    # Complete the form with the red flag still ticked: stored, and the same advice at once.
    fill_24h(page, flag="Chest pain")
    assert submit(page) == 200
    advice = page.get_by_role("alert")
    expect(advice.get_by_role("heading", name=EMERGENCY_TITLE)).to_be_visible()
    expect(advice).to_contain_text("Call your local emergency number now.")
    expect(advice).to_contain_text("Your answers are saved with your record.")
    # The number to call, the clinic's phone (formatted, tap to call) and what was done: no promise of a call back.
    call = advice.get_by_role("link", name="Call 911")
    expect(call).to_have_attribute("href", "tel:911")
    call_box = call.bounding_box()
    assert call_box is not None and call_box["height"] >= MIN_TAP - 0.5 and call_box["width"] >= MIN_TAP - 0.5
    expect(advice.get_by_role("link", name="+1 555-010-0200")).to_have_attribute("href", "tel:+15550100200")
    expect(advice).to_contain_text("We are sending your clinic an alert about your answers.")
    box = advice.bounding_box()
    assert box is not None and box["y"] < 100
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    shot()
    stored = response_for(env, contact)
    assert stored is not None and stored.id == partial.id, "the complete answer fills in the partial's row"
    assert sorted(stored.redflags) == ["breathless", "chest_pain"]
    assert stored.advice_tier == "EMERGENCY"
    with Session(env.engine) as db:
        cases = db.exec(select(EscalationCase).where(EscalationCase.contact_id == contact.id)).all()
    assert [c.id for c in cases] == [case.id], "breathless and chest pain are both R2: no second case"


def test_closed_and_expired_links_show_no_patient_data(env: Env, page: Page, shot: Any) -> None:
    visit = record_visit(env, "expired")
    send_due(env, visit, 24)
    link = emailed_link(env, visit, DAY_1)
    contact = contact_of(env, visit, "check_24h")
    with Session(env.engine) as db:
        row = db.get(Contact, contact.id)
        assert row is not None
        row.window_closes_at = utcnow() - timedelta(minutes=1)
        db.add(row)
        db.commit()

    def assert_no_patient_data() -> None:
        html, text = page.content(), visible_text(page)
        for secret in (PATIENT_NAME, PATIENT_LAST, visit.email, "Riverside", DAY_1, "+15550100200"):
            assert not re.search(rf"\b{re.escape(secret)}\b", html), secret
            assert not re.search(rf"\b{re.escape(secret)}\b", text), secret
        expect(page.locator("form")).to_have_count(0)

    # The emailed link after the check-in's window has closed.
    response = page.goto(link)
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("This check-in is closed")
    expect(page.get_by_text("no longer takes answers")).to_be_visible()
    assert_no_patient_data()
    shot()

    # A genuine link whose own expiry has passed.
    assert contact.id is not None
    token = make_token(
        contact.id,
        contact.patient_id,
        contact.step_id,
        utcnow() - timedelta(hours=1),
        env.settings.secret_key.get_secret_value(),
    )
    response = page.goto(f"{env.base_url}/s/{token}")
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired")
    assert_no_patient_data()
    shot("token")

    # A tampered link.
    response = page.goto(link[:-2] + ("AA" if not link.endswith("AA") else "BB"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    assert_no_patient_data()


def test_72h_check_with_groc_on_a_phone(env: Env, page: Page, shot: Any) -> None:
    visit = record_visit(env, "check72")
    send_due(env, visit, 24)
    emailed_link(env, visit, DAY_1)  # the 1-day check went first, unanswered
    send_due(env, visit, 72)
    page.goto(emailed_link(env, visit, DAY_3))

    expect(page.get_by_role("heading", level=1)).to_have_text(DAY_3)
    assert field_names(page) == CHECK_72H_FIELDS
    groc = question(page, GROC)
    expect(groc).to_be_visible()
    expect(groc).to_contain_text("From −7 (a very great deal worse) through 0 (about the same)")
    expect(groc.get_by_role("radio")).to_have_count(15)
    for value, label in GROC_LABELS.items():
        anchor = groc.locator("label").filter(has_text=label)
        expect(anchor.first).to_be_visible()
        expect(anchor.first).to_contain_text(f"{value:+d}" if value else "0")
    # Nothing is wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]

    tap_choice(page, SORENESS, "2")
    tap_choice(page, NPRS_USUAL, "3")
    tap_choice(page, NPRS_WORST, "5")
    tap_choice(page, BRUISE, "No bruise")
    tap_choice(page, REDFLAGS, "None of these", role="checkbox")
    tap_choice(page, RAN, "Yes")
    tap_choice(page, RUN_PAIN, "2")
    tap_choice(page, GROC, re.compile(r"^\+3\s+Somewhat better$"))
    shot("filled")
    assert submit(page) == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    shot()

    stored = response_for(env, contact_of(env, visit, "check_72h"))
    assert stored is not None
    assert (stored.soreness, stored.nprs_usual, stored.nprs_worst, stored.groc15) == (2, 3, 5, 3)
    assert (stored.ran, stored.run_pain, stored.redflags) == (True, 2, ["none"])
    assert contact_of(env, visit, "check_24h").status == ContactStatus.EXPIRED.value


def check_accessibility(page: Page) -> None:
    """Every visible control has a name, every aria-describedby id exists, every tap target is 44 px."""
    expect(page.get_by_role("button", name=SEND)).to_be_visible()
    unnamed = page.locator("input:visible, select:visible, textarea:visible").evaluate_all(
        """els => els.length === 0 ? ['(no visible fields)'] : els.filter(e => !(
               (e.labels && [...e.labels].some(l => l.textContent.trim().length > 0))
               || (e.getAttribute('aria-label') || '').trim()
               || (e.getAttribute('aria-labelledby') || '').split(/\\s+/).some(id => document.getElementById(id))
           )).map(e => e.outerHTML)"""
    )
    assert unnamed == [], f"controls without an accessible name: {unnamed}"
    missing = page.evaluate(
        """() => [...document.querySelectorAll('[aria-describedby]')]
              .flatMap(e => e.getAttribute('aria-describedby').split(/\\s+/))
              .filter(id => id && !document.getElementById(id))"""
    )
    assert missing == [], f"aria-describedby names missing ids: {missing}"
    boxes = page.locator(
        "form label:has(input[type=radio]), form label:has(input[type=checkbox]), "
        "form input[type=text], form input[type=number], form textarea, form button"
    ).evaluate_all(
        """els => els.map(e => {
               const r = e.getBoundingClientRect();
               return {what: (e.innerText || e.name || e.tagName).trim().slice(0, 40), w: r.width, h: r.height};
           })"""
    )
    assert len(boxes) > 10
    small = [b for b in boxes if b["h"] < MIN_TAP - 0.5 or b["w"] < MIN_TAP - 0.5]
    assert small == [], f"tap targets under {MIN_TAP} px: {small}"


def test_accessibility_smoke(env: Env, page: Page, shot: Any) -> None:
    """Our own checks and axe-core (target-size on) on the form, the form with errors and urgent advice, and the
    thank-you page after a red flag."""
    visit = record_visit(env, "a11y")
    send_due(env, visit, 24)
    page.goto(emailed_link(env, visit, DAY_1))
    check_accessibility(page)
    expect_no_violations(page, "the 1-day check-in")
    # And on the page with an error shown.
    fill_24h(page, fainted=None)
    assert submit(page) == 422
    check_accessibility(page)
    expect_no_violations(page, "the 1-day check-in with an error")
    shot("24h-error")
    # Errors and emergency advice together, then the advice once stored.
    question(page, REDFLAGS).locator("label").filter(has_text="None of these").tap()
    expect(page.get_by_label("None of these")).not_to_be_checked()
    tap_choice(page, REDFLAGS, "Chest pain", role="checkbox")
    assert submit(page) == 422
    expect(page.locator("section.advice")).to_be_visible()
    expect_no_violations(page, "the check-in with errors and emergency advice")
    tap_choice(page, FAINTED, "No")
    assert submit(page) == 200
    expect(page.get_by_role("link", name="Call 911")).to_be_visible()
    expect_no_violations(page, "the thank-you page after a red flag")
    shot("advice")

    send_due(env, visit, 72)
    page.goto(emailed_link(env, visit, DAY_3))
    check_accessibility(page)
    expect_no_violations(page, "the 3-day check-in")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    shot()


def _answer_every_question(page: Page) -> None:
    """Answer whatever the step asks, by tapping labels as a patient would: mild values, no red flag."""
    radio_names = page.eval_on_selector_all("form input[type=radio]", "els => [...new Set(els.map(e => e.name))]")
    preferred = {"bruise": "none", "fainted": "no", "ran": "no", "groc15": "2"}
    for name in radio_names:
        if name.startswith("psfs_score_") and name != "psfs_score_0":
            continue  # one activity is enough; a score without an activity is refused
        values = page.eval_on_selector_all(f'form input[type=radio][name="{name}"]', "els => els.map(e => e.value)")
        value = preferred.get(name, "2" if "2" in values else values[0])
        if value not in values:
            value = values[0]
        page.locator(f'label:has(input[name="{name}"][value="{value}"])').first.tap()
    none_box = page.locator('label:has(input[type=checkbox][value="none"])')
    if none_box.count():
        none_box.first.tap()
    if page.locator("#rom_value").count():
        page.locator("#rom_value").fill(page.locator("#rom_value").get_attribute("min") or "0")
    activity = page.locator("#psfs_activity_0")
    if activity.count() and not activity.input_value():
        activity.fill("Easy 5 km run")


def test_every_step_of_a_protocol_by_browser(env: Env, page: Page, shot: Any) -> None:
    """Each check of the Achilles protocol, opened on a phone and answered: the answer is stored."""
    from needlecare.followup import planning
    from needlecare.followup.protocols import get_protocol

    protocol = get_protocol("achilles_tendinopathy")
    for step in protocol.steps:
        completed = utcnow() - timedelta(hours=step.offset_hours, minutes=10)
        body = event_body(
            1,
            external_session_id=f"BROWSER-EVERY-{step.id}",
            completed_at=completed.isoformat(),
            patient__external_id=f"BROWSER-EVERY-{step.id}",
            patient__email=f"every.{step.id}@example.org",
        )
        with Session(env.engine, expire_on_commit=False) as db:
            ingest.record(db, ingest.validate(body), actor="test")
            planning.plan_pending_sessions(db, now=utcnow())
            contact = db.exec(
                select(Contact).where(Contact.step_id == step.id).order_by(Contact.id.desc())  # type: ignore[union-attr]
            ).first()
        assert contact is not None and contact.id is not None
        token = make_token(
            contact.id,
            contact.patient_id,
            step.id,
            contact.window_closes_at,
            env.settings.secret_key.get_secret_value(),
        )
        page.goto(f"{env.base_url}/s/{token}")
        _answer_every_question(page)
        status = submit(page)
        assert status == 200, (step.id, visible_text(page)[:500])
        expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
        shot(step.id)
        stored = response_for(env, contact)
        assert stored is not None and stored.step_id == step.id and stored.channel == "web"
