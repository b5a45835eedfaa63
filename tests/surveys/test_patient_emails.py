"""The emails a patient gets, sent through the real outbox to a local SMTP sink: the clinic's phone formatted and
dialable, the emergency number, place names for times, the side of the needling and an honest question count."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session

from models import Clinic
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import CapturedMail, list_mail, start_capture
from needlecare.followup import outbox
from needlecare.intake import ingest
from needlecare.safety.clinic_config import parse_config, to_stored
from tests.factories import event_body


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    directory = settings.resolved_mail_capture_dir
    controller: Controller = start_capture(directory, port=settings.smtp_capture_port)
    yield directory
    controller.stop()


def _noon_yesterday() -> datetime:
    """A session at local noon the day before (New York): +24 h falls in the daytime, outside quiet hours."""
    here = utcnow().astimezone(ZoneInfo("America/New_York")) - timedelta(days=1)
    return here.replace(hour=12, minute=0, second=0, microsecond=0).astimezone(UTC)


def _mail(sink: Path, subject_part: str) -> CapturedMail:
    [mail] = [m for m in list_mail(sink) if subject_part in m.subject]
    return mail


def _words(mail: CapturedMail) -> tuple[str, str]:
    """The text part and the visible words of the HTML part, whitespace collapsed."""
    visible = re.sub(r"<[^>]+>", " ", mail.html).replace("&nbsp;", " ")
    return " ".join(mail.text.split()), " ".join(visible.split())


def test_aftercare_and_check_in_emails_speak_the_patients_language(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    completed = _noon_yesterday()
    body = event_body(1, completed_at=completed.isoformat(), side="left", regions_needled=["calf", "shin"])
    ingest.record(db, ingest.validate(body), actor="test")
    outbox.run_pass(db, now=completed + timedelta(minutes=5), settings=settings)
    aftercare = _mail(sink, "After your session")
    for words in _words(aftercare):
        assert "Where we used needles: left calf and left shin." in words
        assert "Call the clinic" in words and "+1 555-010-0200" in words
        assert "+15550100200" not in words.replace("tel:+15550100200", ""), "the raw number only inside tel: links"
        assert "Call 911 if you have any of these" in words
        assert "(New York time)" in words and "America/New_York" not in words
    assert 'href="tel:+15550100200"' in aftercare.html and 'href="tel:911"' in aftercare.html

    outbox.run_pass(db, now=completed + timedelta(hours=24, minutes=5), settings=settings)
    check_in = _mail(sink, "1-day check-in")
    for words in _words(check_in):
        assert "It has 4 questions, a checklist of 18 warning signs to tick and an optional comment box." in words
        assert "short questions" not in words and "minute" not in words
        assert "phone the clinic on +1 555-010-0200" in words and "call 911" in words
        assert "(New York time)" in words and "America/New_York" not in words
    assert 'href="tel:911"' in check_in.html


def test_the_clinics_own_emergency_number_reaches_its_emails(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    clinic.config = to_stored(parse_config({"emergency_number": "112"}))
    db.add(clinic)
    db.commit()
    completed = _noon_yesterday()
    ingest.record(db, ingest.validate(event_body(1, completed_at=completed.isoformat(), side="both")), actor="test")
    outbox.run_pass(db, now=completed + timedelta(minutes=5), settings=settings)
    aftercare = _mail(sink, "After your session")
    text, visible = _words(aftercare)
    for words in (text, visible):
        assert "Call 112 if you have any of these" in words
        assert not re.search(r"\b911\b", words), "no other country's number (a word, not hex in a token)"
        assert "Where we used needles: calf, on both sides." in words
    assert 'href="tel:112"' in aftercare.html
