"""Escalation on real parts: answers evaluated in the storing transaction, cases, alerts through Apprise to a
real SMTP sink and a local webhook, SLA re-alerts to the backup, acknowledging, and missed checks (R13)."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, col, select

from models import (
    Alert,
    AuditEvent,
    CaseRule,
    Clinic,
    Contact,
    EscalationCase,
    Notification,
    RuleEvaluation,
    StaffUser,
)
from models.base import utcnow
from needlecare.core.events import AppEvent
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import list_mail, start_capture
from needlecare.followup.delivery import PermanentDeliveryError, Route, send_alert
from needlecare.followup.questions import SurveyAnswers
from needlecare.safety import alerts, escalation
from needlecare.safety.clinic_config import parse_config, to_stored
from needlecare.staff.auth import create_user
from needlecare.surveys.responses import record_answer
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE
from tests.records import make_contact, make_session
from tests.webhook import Webhook, webhook

OK_24H = SurveyAnswers(soreness=3, bruise="none", redflags=["none"], fainted=False)


@pytest.fixture
def sink(settings: Settings) -> Iterator[Path]:
    controller: Controller = start_capture(settings.resolved_mail_capture_dir, port=settings.smtp_capture_port)
    yield settings.resolved_mail_capture_dir
    controller.stop()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook() as h:
        yield h


@pytest.fixture
def routed(db: Session, clinic: Clinic, settings: Settings, hook: Webhook) -> Clinic:
    """Email (the SMTP sink) for every tier; the webhook for urgent tiers and as the backup."""
    email_url = f"{settings.resolved_patient_email_url}&to=on-call@riverside.example"
    clinic.config = to_stored(
        parse_config(
            {
                "alerts": [
                    {"url": email_url, "tags": ["emergency", "same_day", "next_bd"]},
                    {"url": hook.url, "tags": ["emergency", "same_day", "backup"]},
                ]
            }
        )
    )
    db.add(clinic)
    db.commit()
    return clinic


@pytest.fixture
def staff(db: Session, clinic: Clinic) -> StaffUser:
    return create_user(db, clinic.id, "dana@riverside.example", "Dana Reyes", "correct horse battery staple")


def _cases(db: Session) -> list[EscalationCase]:
    db.expire_all()
    return list(db.exec(select(EscalationCase).order_by(col(EscalationCase.id))).all())


def _alerts(db: Session) -> list[Alert]:
    db.expire_all()
    return list(db.exec(select(Alert).order_by(col(Alert.id))).all())


def test_a_quiet_answer_is_evaluated_and_recorded_without_a_case(
    db: Session, clinic: Clinic, emitted: list[AppEvent]
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    answered = record_answer(db, contact, OK_24H, channel="web", now=utcnow())
    [evaluation] = db.exec(select(RuleEvaluation)).all()
    assert (evaluation.response_id, evaluation.kind, evaluation.highest_tier) == (answered.response.id, "answer", None)
    assert evaluation.rules_version and evaluation.inputs["soreness"] == 3 and evaluation.fired == []
    assert _cases(db) == [] and _alerts(db) == []
    assert emitted[-1].labels == {"needlecare.escalation": "none"}


def test_a_red_flag_opens_a_case_with_its_rules_and_queues_one_alert(
    db: Session, clinic: Clinic, emitted: list[AppEvent]
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    answers = SurveyAnswers(soreness=8, bruise="large", redflags=["pus"], fainted=False, free_text="feel faint")
    answered = record_answer(db, contact, answers, channel="web", now=utcnow())
    assert answered.response.advice_tier == "SAME_DAY"
    [case] = _cases(db)
    assert (case.tier, case.status, case.response_id) == ("SAME_DAY", "open", answered.response.id)
    assert case.due_at > case.opened_at
    rules = db.exec(select(CaseRule.rule_id).where(CaseRule.case_id == case.id)).all()
    assert set(rules) == {"R5", "R7", "R10", "R16"}, "every escalating rule, none of the INFO ones"
    [alert] = _alerts(db)
    assert (alert.idempotency_key, alert.audience, alert.status) == (f"case:{case.id}:primary", "primary", "pending")
    event = emitted[-1]
    assert event.labels == {"needlecare.escalation": "case"}
    assert event.payload["case_id"] == case.id and event.payload["tier"] == "SAME_DAY"
    assert all(isinstance(v, int) or v in ("SAME_DAY",) for v in event.payload.values()), "IDs and the tier only"


def test_improvement_is_info_only(db: Session, clinic: Clinic) -> None:
    session = make_session(db)  # baseline pain 6
    contact = make_contact(db, session, "check_72h")
    answers = SurveyAnswers(soreness=1, nprs_usual=2, nprs_worst=3, redflags=["none"], groc15=5, ran=False)
    answered = record_answer(db, contact, answers, channel="api", now=utcnow())
    assert answered.outcome.evaluation.highest_tier == "INFO" and answered.outcome.case_id is None
    assert _cases(db) == []


def test_alerts_reach_the_smtp_sink_and_the_webhook_without_patient_data(
    db: Session, routed: Clinic, settings: Settings, sink: Path, hook: Webhook
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    answers = SurveyAnswers(soreness=2, bruise="none", redflags=["breathless"], fainted=False)
    record_answer(db, contact, answers, channel="web", now=utcnow())
    [case] = _cases(db)
    assert case.tier == "EMERGENCY"
    result = alerts.send_due(db, now=utcnow(), settings=settings)
    assert (result.claimed, result.sent) == (1, 1)
    [mail] = list_mail(sink)
    assert f"/cases/{case.id}" in mail.text and "EMERGENCY" in mail.subject
    [post] = hook.posts
    assert f"http://needlecare.test/cases/{case.id}" in post["body"]["message"]
    everything = mail.subject + mail.text + mail.html + str(post)
    for secret in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE, "breathless"):
        assert secret not in everything, f"{secret!r} must not be in an alert"
    # Exactly once: another pass sends nothing.
    assert alerts.send_due(db, now=utcnow(), settings=settings).claimed == 0
    assert len(list_mail(sink)) == 1 and len(hook.posts) == 1


def test_next_business_day_goes_to_email_only(
    db: Session, routed: Clinic, settings: Settings, sink: Path, hook: Webhook
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    record_answer(db, contact, SurveyAnswers(soreness=7, redflags=["none"]), channel="web", now=utcnow())
    [case] = _cases(db)
    assert case.tier == "NEXT_BD"
    assert alerts.send_due(db, now=utcnow(), settings=settings).sent == 1
    assert len(list_mail(sink)) == 1 and hook.posts == [], "the webhook is not tagged next_bd"


def test_without_routes_the_clinic_email_gets_the_alert(
    db: Session, clinic: Clinic, settings: Settings, sink: Path
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    record_answer(db, contact, SurveyAnswers(redflags=["pus"], soreness=1), channel="web", now=utcnow())
    alerts.send_due(db, now=utcnow(), settings=settings)
    [mail] = list_mail(sink)
    assert "front-desk@riverside.example" in mail.headers["To"]


def test_an_unreachable_route_retries_then_fails_and_the_case_stays_open(
    db: Session, clinic: Clinic, settings: Settings
) -> None:
    clinic.config = to_stored(
        parse_config({"alerts": [{"url": "json://127.0.0.1:9/x", "tags": list(("emergency", "same_day", "next_bd"))}]})
    )
    db.add(clinic)
    db.commit()
    contact = make_contact(db, make_session(db), "check_24h")
    record_answer(db, contact, SurveyAnswers(redflags=["pus"], soreness=1), channel="web", now=utcnow())
    first = alerts.send_due(db, now=utcnow(), settings=settings)
    assert first.retried == 1
    [alert] = _alerts(db)
    assert alert.status == "retry" and alert.last_error
    assert _cases(db)[0].status == "open"


def test_sla_passes_unacknowledged_and_the_backup_is_alerted_once(
    db: Session, routed: Clinic, settings: Settings, sink: Path, hook: Webhook
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    now = utcnow()
    record_answer(db, contact, SurveyAnswers(redflags=["breathless"], soreness=1), channel="web", now=now)
    alerts.send_due(db, now=now, settings=settings)
    [case] = _cases(db)
    assert case.due_at == now + timedelta(minutes=30), "EMERGENCY: 30 wall-clock minutes by default"
    assert escalation.sweep(db, now=now + timedelta(minutes=29)).realerted == 0
    later = now + timedelta(minutes=31)
    assert escalation.sweep(db, now=later).realerted == 1
    assert escalation.sweep(db, now=later + timedelta(hours=1)).realerted == 0, "one backup alert per case"
    sent = alerts.send_due(db, now=later, settings=settings)
    assert sent.sent == 1
    assert len(hook.posts) == 2 and "OVERDUE" in hook.posts[-1]["body"]["title"]
    assert len(list_mail(sink)) == 1, "the email route is not tagged backup"
    actions = db.exec(select(AuditEvent.action).where(AuditEvent.entity == "escalation_case")).all()
    assert "case.realerted" in actions


def test_acknowledging_stops_the_re_alert(
    db: Session, routed: Clinic, settings: Settings, staff: StaffUser, hook: Webhook, sink: Path
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    now = utcnow()
    record_answer(db, contact, SurveyAnswers(redflags=["breathless"], soreness=1), channel="web", now=now)
    alerts.send_due(db, now=now, settings=settings)
    [case] = _cases(db)
    assert case.id is not None
    escalation.acknowledge(db, case.id, staff, now=now + timedelta(minutes=5))
    assert escalation.sweep(db, now=now + timedelta(hours=2)).realerted == 0
    assert alerts.send_due(db, now=now + timedelta(hours=2), settings=settings).claimed == 0
    assert len(hook.posts) == 1
    with pytest.raises(escalation.CaseError, match="already acknowledged"):
        escalation.acknowledge(db, case.id, staff, now=now)
    with pytest.raises(escalation.CaseError, match="note is required"):
        escalation.resolve(db, case.id, staff, "   ", now=now)
    resolved = escalation.resolve(db, case.id, staff, "Phoned; patient seen in A&E, discharged.", now=now)
    assert resolved.status == "resolved" and resolved.resolved_by == staff.id
    audit = db.exec(select(AuditEvent).where(AuditEvent.entity_id == str(case.id))).all()
    assert {(a.action, a.actor) for a in audit} >= {
        ("case.acknowledged", f"staff:{staff.id}"),
        ("case.resolved", f"staff:{staff.id}"),
    }


def test_a_backup_alert_queued_but_unsent_is_skipped_once_acknowledged(
    db: Session, routed: Clinic, settings: Settings, staff: StaffUser, hook: Webhook, sink: Path
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    now = utcnow()
    record_answer(db, contact, SurveyAnswers(redflags=["breathless"], soreness=1), channel="web", now=now)
    alerts.send_due(db, now=now, settings=settings)
    escalation.sweep(db, now=now + timedelta(hours=1))
    [case] = _cases(db)
    assert case.id is not None
    escalation.acknowledge(db, case.id, staff, now=now + timedelta(hours=1))
    alerts.send_due(db, now=now + timedelta(hours=1), settings=settings)
    backup = [a for a in _alerts(db) if a.audience == "backup"]
    assert [a.status for a in backup] == ["skipped"] and len(hook.posts) == 1


def test_a_user_of_another_clinic_cannot_act_on_a_case(db: Session, clinic: Clinic) -> None:
    from models import ClinicCreate
    from needlecare.intake.clinics import add_clinic

    add_clinic(db, ClinicCreate(id="hillside", name="Hillside", email="h@hillside.example"), actor="test")
    other = create_user(db, "hillside", "lee@hillside.example", "Lee", "correct horse battery staple")
    contact = make_contact(db, make_session(db), "check_24h")
    record_answer(db, contact, SurveyAnswers(redflags=["pus"], soreness=1), channel="web", now=utcnow())
    [case] = _cases(db)
    assert case.id is not None
    with pytest.raises(escalation.CaseError, match="no case"):
        escalation.acknowledge(db, case.id, other, now=utcnow())


def test_a_missed_safety_check_after_a_same_day_answer_opens_an_r13_case(db: Session, clinic: Clinic) -> None:
    session = make_session(db)
    first = make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(hours=-10))
    first.status = "sent"
    db.add(first)
    db.commit()
    record_answer(
        db, first, SurveyAnswers(redflags=["pus"], soreness=2), channel="web", now=utcnow() - timedelta(hours=20)
    )
    second = make_contact(
        db, session, "check_72h", status="expired", opens=timedelta(hours=-10), closes=timedelta(hours=-1)
    )
    result = escalation.sweep(db, now=utcnow())
    assert (result.missed_evaluated, result.missed_cases) == (1, 1)
    cases = _cases(db)
    assert [c.tier for c in cases] == ["SAME_DAY", "SAME_DAY"]
    r13 = cases[1]
    assert r13.contact_id == second.id and r13.response_id is None and r13.idempotency_key == f"missed:{second.id}"
    assert db.exec(select(CaseRule.rule_id).where(CaseRule.case_id == r13.id)).all() == ["R13"]
    again = escalation.sweep(db, now=utcnow() + timedelta(minutes=1))
    assert again.missed_evaluated == 0, "evaluated once"


def test_a_missed_check_without_an_earlier_escalation_does_not_escalate(db: Session, clinic: Clinic) -> None:
    session = make_session(db)
    first = make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(hours=-10))
    record_answer(db, first, OK_24H, channel="web", now=utcnow() - timedelta(hours=20))
    make_contact(db, session, "check_72h", status="expired", opens=timedelta(hours=-10), closes=timedelta(hours=-1))
    assert escalation.sweep(db, now=utcnow()).missed_evaluated == 0
    assert len(_cases(db)) == 0


def test_a_sent_check_counts_as_missed_six_hours_after_its_reminder(db: Session, clinic: Clinic) -> None:
    session = make_session(db)
    first = make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(hours=-10))
    record_answer(
        db, first, SurveyAnswers(redflags=["pus"], soreness=2), channel="web", now=utcnow() - timedelta(hours=20)
    )
    second = make_contact(db, session, "check_72h", opens=timedelta(hours=-10), closes=timedelta(hours=20))
    assert second.id is not None
    now = utcnow()
    db.add(
        Notification(
            idempotency_key=f"survey:{second.id}:1",
            kind="reminder",
            channel="email",
            contact_id=second.id,
            sequence=1,
            patient_id=second.patient_id,
            status="sent",
            due_at=now - timedelta(hours=7),
            sent_at=now - timedelta(hours=5),
        )
    )
    db.commit()
    assert escalation.sweep(db, now=now).missed_evaluated == 0, "5 h after the reminder: still time to answer"
    assert escalation.sweep(db, now=now + timedelta(hours=1, minutes=1)).missed_cases == 1
    db.expire_all()
    assert db.get(Contact, second.id) is not None


def test_an_email_alert_has_a_phone_sized_html_part_with_a_button_and_our_text_part(
    db: Session, routed: Clinic, settings: Settings, sink: Path, hook: Webhook
) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    record_answer(db, contact, SurveyAnswers(soreness=2, redflags=["breathless"]), channel="web", now=utcnow())
    [case] = _cases(db)
    assert alerts.send_due(db, now=utcnow(), settings=settings).sent == 1
    [mail] = list_mail(sink)
    url = f"http://needlecare.test/cases/{case.id}"
    # The HTML part: the template's own markup, not Apprise's text-to-HTML conversion.
    assert "&nbsp;" not in mail.html and "max-width:600px" in mail.html
    assert f'<a href="{url}"' in mail.html and f"Open case #{case.id}</a>" in mail.html
    assert "an emergency case" in mail.html and "a EMERGENCY" not in mail.html + mail.text
    assert "Chest or breathing symptoms" in mail.html, "the rule's title, not its id"
    # The text part is the one we rendered (with the full link), not a conversion of the HTML.
    assert "<" not in mail.text and url in mail.text and "an emergency case" in mail.text
    assert "R2" not in mail.text and "Chest or breathing symptoms: " in mail.text
    # A non-email route gets the plain text.
    [post] = hook.posts
    assert "<" not in post["body"]["message"] and url in post["body"]["message"]
    for secret in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE):
        assert secret not in mail.html + mail.text + mail.subject


def test_a_same_day_alert_reads_a_same_day_case(db: Session, clinic: Clinic, settings: Settings, sink: Path) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    record_answer(db, contact, SurveyAnswers(redflags=["pus"], soreness=1), channel="web", now=utcnow())
    alerts.send_due(db, now=utcnow(), settings=settings)
    [mail] = list_mail(sink)
    assert mail.subject.startswith("Same-day case #")
    assert "opened a same-day case" in mail.text and "opened a same-day case" in mail.html
    assert "Possible needle-site infection" in mail.text


def test_the_article_follows_the_sound_of_the_tier_word() -> None:
    assert [alerts.article(w) for w in alerts.TIER_WORDS.values()] == ["an", "a", "a"]


def test_a_plain_text_alert_to_an_html_email_route_is_readable_html_with_a_working_link(
    settings: Settings, sink: Path
) -> None:
    route = Route(f"{settings.resolved_patient_email_url}&to=on-call@riverside.example&format=html", ("backup",))
    text = "A check-in could not be delivered.\nSee the page:\n\nhttp://needlecare.test/undelivered?a=1&b=2"
    send_alert([route], "backup", "Undelivered message at Riverside Physio", text)
    [mail] = list_mail(sink)
    assert mail.text.replace("\r\n", "\n").strip() == text, "the text part is ours"
    assert "&nbsp;" not in mail.html and "max-width:600px" in mail.html
    assert '<a href="http://needlecare.test/undelivered?a=1&amp;b=2"' in mail.html
    assert "delivered.<br>See the page:" in mail.html


def test_an_unusable_alert_url_is_refused_before_any_route_is_sent_to(settings: Settings, sink: Path) -> None:
    good = Route(f"{settings.resolved_patient_email_url}&to=on-call@riverside.example", ("backup",))
    bad = Route("nosuchscheme://nowhere", ("backup",))
    with pytest.raises(PermanentDeliveryError, match="could not be parsed"):
        send_alert([good, bad], "backup", "Title", "Body http://needlecare.test/cases/1")
    assert list_mail(sink) == []
