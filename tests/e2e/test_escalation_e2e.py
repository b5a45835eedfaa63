"""Safety escalation end to end on real parts: a red-flag answer in Chromium shows the advice at once; the
served escalation flow (started by the ``needlecare.survey.answered`` event) sends the practitioner alert to
the SMTP sink and a local webhook; the case is on the cases page behind the login; acknowledging it stops
its re-alert, while the unacknowledged case re-alerts the backup once the SLA has passed (clock advanced
with ``needlecare dispatch --as-of``)."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlmodel import Session, select

from models import Clinic, EscalationCase
from models.base import utcnow
from needlecare.core import db as database
from needlecare.safety.advice import EMERGENCY_TITLE
from needlecare.safety.clinic_config import parse_config, to_stored
from needlecare.staff import auth
from tests.conftest import CLINIC_SECRET
from tests.e2e.browser import PHONE, launch_chromium, screenshot, survey_link
from tests.e2e.stack import Stack, post_session, zone_at_local_hour
from tests.factories import event_body
from tests.webhook import Webhook, webhook

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
STAFF = "dana@riverside.example"


@pytest.fixture(scope="module")
def hook() -> Iterator[Webhook]:
    with webhook() as h:
        yield h


@pytest.fixture(scope="module")
def routed(stack: Stack, hook: Webhook) -> Stack:
    smtp_port = stack.env["NEEDLECARE_SMTP_CAPTURE_PORT"]
    email = f"mailto://127.0.0.1:{smtp_port}?mode=insecure&from=alerts@needlecare.local&to=on-call@riverside.example"
    with Session(database.get_engine(stack.db_url)) as db:
        clinic = db.get(Clinic, "riverside-physio")
        assert clinic is not None
        clinic.config = to_stored(
            parse_config(
                {
                    "alerts": [
                        {"url": email, "tags": ["emergency", "same_day", "next_bd"]},
                        {"url": hook.url, "tags": ["emergency", "same_day", "backup"]},
                    ]
                }
            )
        )
        db.add(clinic)
        db.commit()
        auth.create_user(db, "riverside-physio", STAFF, "Dana Reyes", PASSWORD)
    return stack


def daytime_zone() -> str:
    """A fixed-offset zone where it is early afternoon now, so quiet hours never hold the check-in back."""
    return zone_at_local_hour(13)


def _session(stack: Stack, n: int, email: str) -> None:
    body = event_body(
        n,
        completed_at=(utcnow() - timedelta(hours=25)).isoformat(),
        patient__email=email,
        patient__timezone=daytime_zone(),
    )
    post_session(stack, body, CLINIC_SECRET)


def _answer_in_browser(page: Page, link: str, flag: str) -> None:
    page.goto(link)
    page.get_by_role("group", name=re.compile(r"^How sore are the spots")).get_by_label("2", exact=True).check()
    page.get_by_role("group", name=re.compile(r"^What was the worst pain")).get_by_label("3", exact=True).check()
    page.get_by_role("group", name=re.compile(r"^Do you have a bruise")).get_by_label("No bruise").check()
    page.locator(f'input[name="redflags"][value="{flag}"]').check()
    page.get_by_role("group", name=re.compile(r"^Did you faint")).get_by_label("No").check()
    page.get_by_role("button", name="Send my answers").click()


def _case_for(stack: Stack, external_patient: str) -> EscalationCase:
    from models import Patient

    with Session(database.get_engine(stack.db_url)) as db:
        case = db.exec(
            select(EscalationCase)
            .join(Patient, Patient.id == EscalationCase.patient_id)  # type: ignore[arg-type]
            .where(Patient.external_id == external_patient)
        ).one()
        return case


def _alert_mails(stack: Stack) -> list[Any]:
    return [m for m in stack.mails() if any("on-call@riverside.example" in to for to in m.to)]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_red_flag_to_alert_to_case_to_re_alert(routed: Stack, hook: Webhook) -> None:
    stack = routed
    _session(stack, 901, "pat901@example.org")
    _session(stack, 902, "pat902@example.org")
    link_a = survey_link(stack.mail_dir, "pat901@example.org", "1-day check-in", timeout=240)
    link_b = survey_link(stack.mail_dir, "pat902@example.org", "1-day check-in", timeout=240)

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            patient = browser.new_context(**PHONE).new_page()
            _answer_in_browser(patient, link_a, "breathless")
            advice = patient.locator("section.advice")
            expect(advice.get_by_role("heading")).to_have_text(EMERGENCY_TITLE)
            expect(advice).to_contain_text("Your answers are saved with your record.")
            screenshot(patient, "escalation-patient-emergency-advice")
            _answer_in_browser(patient, link_b, "pus")
            expect(patient.locator("section.advice")).to_contain_text("a needle site may be infected")

            # The alerts arrive without anyone running anything: the event starts the escalation flow.
            stack.wait_for(lambda: len(hook.posts) >= 2, 180, "two webhook alerts")
            stack.wait_for(lambda: len(_alert_mails(stack)) >= 2, 60, "two alert emails")
            case_a, case_b = _case_for(stack, "PT-901"), _case_for(stack, "PT-902")
            assert (case_a.tier, case_b.tier) == ("EMERGENCY", "SAME_DAY")
            titles = sorted(post["body"]["title"] for post in hook.posts)
            assert any(f"case #{case_a.id}" in t and "EMERGENCY" in t for t in titles), titles
            for post in hook.posts:
                assert "Okafor" not in json.dumps(post) and "breathless" not in json.dumps(post)

            staff = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            staff.goto(f"{stack.web_url}/cases")
            staff.get_by_label("Email").fill(STAFF)
            staff.get_by_label("Password").fill(PASSWORD)
            staff.get_by_role("button", name=re.compile("Log in", re.I)).click()
            expect(staff.locator(f'tr[data-case="{case_a.id}"]')).to_contain_text("Emergency")
            expect(staff.locator(f'tr[data-case="{case_b.id}"]')).to_contain_text("Same day")
            screenshot(staff, "escalation-cases-list")
            staff.locator(f'tr[data-case="{case_b.id}"] a').click()
            staff.get_by_role("button", name=re.compile("^Acknowledge")).click()
            expect(staff.get_by_role("status")).to_contain_text("Case acknowledged at")
            expect(staff.locator("#case-status")).to_have_text("Acknowledged")
            expect(staff.locator("#timeline")).to_contain_text("Acknowledged by Dana Reyes")
            screenshot(staff, "escalation-case-acknowledged")
        finally:
            browser.close()

    # Three days on, both SLAs have passed: only the unacknowledged case re-alerts the backup (the webhook).
    before = len(hook.posts)
    env = {**stack.env}
    run = subprocess.run(
        [sys.executable, "-m", "needlecare.cli.main", "dispatch", "--as-of", "+3d", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["realerted"] == 1 and summary["alerts_sent"] == 1, summary
    overdue = [post for post in hook.posts[before:] if "OVERDUE" in post["body"]["title"]]
    assert len(overdue) == 1 and f"case #{case_a.id}" in overdue[0]["body"]["title"]
    again = subprocess.run(
        [sys.executable, "-m", "needlecare.cli.main", "dispatch", "--as-of", "+4d", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["realerted"] == 0, "one re-alert per case"
