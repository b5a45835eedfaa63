"""Text messages end to end on real parts: the stack's served flows send check-ins and reminders through Apprise to
the local SMS gateway on loopback; patients' replies are posted back by the gateway to the web app's inbound webhook
as a provider would; the replies to them go out through the same outbox.

- A patient who agreed to email and SMS and did not answer the emailed 24-hour check gets its reminder by text
  (the clock advanced past the reminder with ``needlecare dispatch --as-of``); the reply "7 0" answers the check.
- A patient who texts "6 1" (a warning sign) gets the rules' advice in the reply text, and a case is open.
- A patient who texts STOP gets the confirmation, and the next message (the check-in's reminder) is not sent: its
  row is skipped with the reason.
"""

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from models import Contact, EscalationCase, Notification, SurveyResponse
from models.base import utcnow
from needlecare.core import db as database
from needlecare.safety.rules.ruleset import get_rules
from tests.conftest import CLINIC_SECRET
from tests.e2e.stack import Stack, post_session, zone_at_local_hour
from tests.factories import event_body

pytestmark = pytest.mark.e2e
EMAIL_AND_SMS = {"email": True, "sms": True}
SMS_ONLY = {"email": False, "sms": True}
PHONE_A, PHONE_B, PHONE_C = "+15550100301", "+15550100302", "+15550100303"


def morning_zone() -> str:
    """A fixed-offset zone where it is about 10:00 now, so neither now nor 8 hours on falls in quiet hours."""
    return zone_at_local_hour(10)


def _session(stack: Stack, n: int, phone: str, consent: dict[str, bool]) -> int:
    body = event_body(
        n,
        completed_at=(utcnow() - timedelta(hours=25)).isoformat(),
        patient__email=f"sms{n}@example.org",
        patient__phone=phone,
        patient__consent=consent,
        patient__timezone=morning_zone(),
    )
    return post_session(stack, body, CLINIC_SECRET)


def _check(stack: Stack, session_id: int) -> Contact | None:
    with Session(database.get_engine(stack.db_url)) as db:
        return db.exec(select(Contact).where(Contact.session_id == session_id, Contact.step_id == "check_24h")).first()


def _rows(stack: Stack, contact_id: int) -> list[Notification]:
    with Session(database.get_engine(stack.db_url)) as db:
        return list(db.exec(select(Notification).where(Notification.contact_id == contact_id)).all())


def _texts_to(stack: Stack, phone: str) -> list[str]:
    return [t.text for t in reversed(stack.texts()) if t.to == phone]  # oldest first


def _wait_text(stack: Stack, phone: str, words: str, what: str) -> str:
    stack.wait_for(lambda: any(words in text for text in _texts_to(stack, phone)), 60, what)
    return next(text for text in _texts_to(stack, phone) if words in text)


def _dispatch(stack: Stack, as_of: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "needlecare.cli.main", "dispatch", "--as-of", as_of, "--json"],
        env={**stack.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _reply(stack: Stack, phone: str, body: str) -> dict[str, Any]:
    assert stack.sms_gateway is not None
    result = stack.sms_gateway.reply(phone, body)
    assert result.status == 200, result.body
    return result.body


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_sms_check_ins_reminders_replies_and_stop(stack: Stack) -> None:
    a = _session(stack, 801, PHONE_A, EMAIL_AND_SMS)  # emailed check-in, not answered
    b = _session(stack, 802, PHONE_B, SMS_ONLY)  # check-in by text; replies with a warning sign
    c = _session(stack, 803, PHONE_C, SMS_ONLY)  # check-in by text; replies STOP

    # The served dispatcher opens the due 24-hour checks: A's by email, B's and C's by text.
    stack.wait_for(lambda: all((k := _check(stack, s)) and k.status == "sent" for s in (a, b, c)), 90, "3 check-ins")
    first_b = _wait_text(stack, PHONE_B, "7 0", "B's check-in by text")
    assert "Riverside Physio" in first_b and "/s/" in first_b and "Reply STOP to stop." in first_b
    _wait_text(stack, PHONE_C, "Reply STOP to stop.", "C's check-in by text")
    assert _texts_to(stack, PHONE_A) == []  # A's first message went by email
    contact_a, contact_b, contact_c = (_check(stack, s) for s in (a, b, c))
    assert contact_a and contact_b and contact_c
    sent_a = lambda: [n.channel for n in _rows(stack, contact_a.id or 0) if n.status == "sent"]  # noqa: E731
    stack.wait_for(lambda: bool(sent_a()), 60, "A's check-in email")
    assert sent_a() == ["email"]

    # B: a warning sign by text -> the same rules' advice in the reply, and a case.
    answered_b = _reply(stack, PHONE_B, "6 1")
    assert answered_b["action"] == "answer"
    l2 = next(rule for rule in get_rules().rules if rule.id == "L2")
    advice = _wait_text(stack, PHONE_B, l2.patient_message, "the advice texted back to B")
    assert advice.startswith("Riverside Physio: ") and "Reply STOP to stop." in advice
    with Session(database.get_engine(stack.db_url)) as db:
        response_b = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact_b.id)).one()
        assert response_b.channel == "sms" and response_b.advice_tier == "EMERGENCY"
        case = db.exec(select(EscalationCase).where(EscalationCase.response_id == response_b.id)).one()
        assert case.status == "open" and case.tier == "EMERGENCY"

    # C: STOP -> confirmed, and no text after it.
    assert _reply(stack, PHONE_C, "STOP")["action"] == "stop"
    _wait_text(stack, PHONE_C, "no more text messages", "C's STOP confirmation")
    texts_to_c = len(_texts_to(stack, PHONE_C))

    # Eight hours on, past the reminders: A's goes by text (email not answered); C's is skipped, with the reason.
    _dispatch(stack, "+8h")
    reminder = _wait_text(stack, PHONE_A, "reminder", "A's reminder by text")
    assert "/s/" in reminder and "7 0" in reminder and "Reply STOP to stop." in reminder
    assert "Sam" not in reminder and "achilles" not in reminder.lower()  # no name, no injury
    [skipped] = [n for n in _rows(stack, contact_c.id or 0) if n.sequence == 1]
    assert skipped.status == "skipped" and skipped.skip_reason and "STOP" in skipped.skip_reason
    assert len(_texts_to(stack, PHONE_C)) == texts_to_c
    assert not [n for n in _rows(stack, contact_b.id or 0) if n.sequence == 1 and n.status == "sent"]  # answered

    # A answers the 24-hour check by replying "7 0".
    before = len(_texts_to(stack, PHONE_A))
    assert _reply(stack, PHONE_A, "7 0")["action"] == "answer"
    stack.wait_for(lambda: len(_texts_to(stack, PHONE_A)) > before, 60, "the reply to A's answer")
    thanks = _texts_to(stack, PHONE_A)[before]
    with Session(database.get_engine(stack.db_url)) as db:
        response_a = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact_a.id)).one()
        assert (response_a.channel, response_a.soreness, response_a.redflags) == ("sms", 7, ["none"])
        answered = db.get(Contact, contact_a.id)
        assert answered is not None and answered.status == "answered"
    assert "Reply STOP to stop." in thanks
