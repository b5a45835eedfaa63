"""The demo uses both channels: patients with fictional E.164 numbers and SMS consent, check-ins whose reminders
go by SMS to the consented who had not answered, answers by text reply, and a report that shows response by channel;
through the real pipeline (SQLite and PostgreSQL) and through the bulk loader."""

from collections import Counter
from datetime import datetime, timedelta

import phonenumbers
from sqlmodel import Session, col, select

from models import Contact, Notification, NotificationStatus, Patient, SurveyResponse
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.demo.bulk import bulk_load
from needlecare.demo.cohort import Cohort, generate_cohort
from needlecare.demo.simulation import run_demo
from needlecare.followup.protocols import get_protocol
from needlecare.outcomes import report_json, reports

CLINIC = "demo-clinic"


def _now() -> datetime:
    return utcnow().replace(microsecond=0)


def _cohort(patients: int, now: datetime, seed: int = 7) -> Cohort:
    return generate_cohort(patients, seed, start=(now - timedelta(weeks=14)).replace(minute=0, second=0))


def test_the_cohort_gives_fictional_valid_numbers_and_a_share_of_sms_consent() -> None:
    now = _now()
    cohort = _cohort(600, now)
    phones = [p.phone for p in cohort if p.phone is not None]
    assert 0.80 < len(phones) / len(cohort) < 0.90
    assert 0.53 < sum(p.consent_sms for p in cohort) / len(cohort) < 0.67
    assert all(p.phone is not None for p in cohort if p.consent_sms)
    for phone in phones:
        number = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(number) and phone[5:10] == "55501", phone  # +1 AAA 555-01xx
    assert len(set(phones)) == len(phones)
    again = _cohort(600, now)
    assert [(p.phone, p.consent_sms, p.sms_reply_draw) for p in again] == [
        (p.phone, p.consent_sms, p.sms_reply_draw) for p in cohort
    ]
    # Drawn on a generator of their own: the rest of each patient is what it was without texting.
    assert [p.sessions for p in _cohort(30, now)] == [p.sessions for p in cohort.patients[:30]]


def _check_history(db: Session, clinic: str, *, rates_shown: bool = True) -> Counter[str]:
    """What both loaders must show; the channel groups of the report's time points. ``rates_shown``: some group's
    response rate is large enough to be shown (a small cohort has every one hidden)."""
    patients = {p.id: p for p in db.exec(select(Patient).where(Patient.clinic_id == clinic)).all()}
    sent = db.exec(
        select(Notification).where(
            Notification.status == NotificationStatus.SENT.value, col(Notification.patient_id).in_(list(patients))
        )
    ).all()
    texts = [m for m in sent if m.channel == "sms"]
    assert texts and any(m.channel == "email" for m in sent), "both channels went out"
    for m in texts:
        patient = patients[m.patient_id]
        assert patient.consent_sms and patient.phone, "a text goes only to a consented patient with a number"
        contact = db.get(Contact, m.contact_id)
        assert contact is not None
        step = get_protocol(contact.injury).step(contact.step_id)
        assert "sms" in (step.channels if m.sequence == 0 else step.reminder_channels)
    replies = db.exec(
        select(SurveyResponse).where(
            SurveyResponse.channel == "sms", col(SurveyResponse.patient_id).in_(list(patients))
        )
    ).all()
    assert replies, "some answers came back by text reply"
    texted_before = {(m.contact_id, m.due_at) for m in texts if m.sequence > 0}
    for r in replies:
        step = get_protocol(r.injury).step(r.step_id)
        assert step.sms_reply_questions and r.redflags == ["none"] and r.soreness is not None
        assert any(c == r.contact_id and due <= r.submitted_at for c, due in texted_before), "a reply follows a text"
        assert r.bruise is None and r.nprs_worst is None, "a reply holds only what a reply answers"

    data = reports.build_report(db, clinic)
    groups = Counter(g.group for s in data.channels for g in s.groups)
    assert {"email", "email_then_sms"} <= set(groups)
    assert sum(s.raw.answered_sms for s in data.channels) == len(replies)
    document = report_json.render_json(data)
    assert '"section": "channels"' in document and '"metric": "answered_sms"' in document
    shown = [g.response_rate for s in data.channels for g in s.groups if g.response_rate.shown]
    assert bool(shown) == rates_shown, "the report shows a response rate by channel"
    return groups


def test_the_demo_through_the_pipeline_uses_both_channels(db: Session, settings: Settings) -> None:
    now = _now()
    run_demo(db, _cohort(60, now), settings=settings, clinic_id=CLINIC, until=now)
    _check_history(db, CLINIC, rates_shown=False)  # 60 patients over ten injuries: every group holds < 11


def test_the_bulk_loader_uses_both_channels(db: Session, settings: Settings) -> None:
    now = _now()
    cohort = _cohort(200, now, seed=5)
    result = bulk_load(db, cohort, settings=settings, clinic_id=CLINIC, now=now, batch=50)
    assert result.messages > result.contacts / 2
    groups = _check_history(db, CLINIC)
    assert groups["email"] > groups["email_then_sms"] > 0
    # A reminder is written only while the check was open and before its answer.
    for m in db.exec(select(Notification).where(col(Notification.sequence) >= 1)).all():
        contact = db.get(Contact, m.contact_id)
        assert contact is not None and m.due_at < contact.window_closes_at and m.due_at <= now
        assert contact.answered_at is None or m.due_at <= contact.answered_at
