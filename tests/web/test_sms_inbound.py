"""POST /api/v1/sms/inbound on SQLite and PostgreSQL: the token, refusals that store nothing, STOP/START/HELP, an
answer by reply (stored like the web form's, same rules, same case), reposts, unknown and ambiguous senders."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, func, select

from models import Clinic, Contact, EscalationCase, Notification, Patient, SurveyResponse
from models.sms import SmsInbound
from needlecare.core.rendering import emergency_number
from needlecare.core.settings import Settings
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import BY_TEXT, InvalidAnswers, validate_answers, validate_sms_reply
from needlecare.safety.rules.ruleset import get_rules
from needlecare.web.app import create_app
from tests.records import make_contact, make_session

TOKEN = "inbound-token-for-tests-0123456789"
URL = "/api/v1/sms/inbound"
PHONE = "+15550100111"
INJURY = "achilles_tendinopathy"


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sms_inbound_token": SecretStr(TOKEN), "rate_limits": False})


@pytest.fixture
def client(app_settings: Settings, clinic: Clinic) -> TestClient:
    return TestClient(create_app(app_settings))


def _patient_with_check(db: Session, n: int, phone: str = PHONE, step: str = "check_24h") -> Contact:
    session = make_session(db, n, patient__phone=phone, patient__consent={"email": False, "sms": True})
    return make_contact(db, session, step)


def send(client: TestClient, body: str, *, mid: str, frm: str = PHONE, token: str | None = TOKEN) -> Any:
    headers = {"X-Needlecare-Token": token} if token else {}
    return client.post(URL, json={"id": mid, "from": frm, "to": "+15550100999", "body": body}, headers=headers)


def _count(db: Session, table: Any) -> int:
    db.expire_all()
    return int(db.exec(select(func.count()).select_from(table)).one())


def _inbound(db: Session, inbound_id: int) -> SmsInbound:
    db.expire_all()
    row = db.get(SmsInbound, inbound_id)
    assert row is not None
    return row


def _reply_row(db: Session, inbound_id: int) -> Notification:
    row = db.exec(select(Notification).where(Notification.sms_inbound_id == inbound_id)).one()
    assert (row.kind, row.channel, row.idempotency_key, row.status) == (
        "sms_reply",
        "sms",
        f"sms_reply:{inbound_id}",
        "pending",
    )
    assert row.contact_id is None
    return row


# ---- the token ------------------------------------------------------------------------------------------


def test_no_token_configured_refuses_every_post_with_503(settings: Settings, clinic: Clinic, db: Session) -> None:
    client = TestClient(create_app(settings))  # env=test, no SMS_INBOUND_TOKEN
    response = send(client, "STOP", mid="m1", token="anything")
    assert response.status_code == 503 and "NEEDLECARE_SMS_INBOUND_TOKEN" in response.json()["detail"]
    assert _count(db, SmsInbound) == 0


def test_development_on_loopback_derives_a_token_from_the_secret_key(tmp_path: Any) -> None:
    dev = Settings(env="development", data_dir=tmp_path)
    assert dev.resolved_sms_inbound_token and dev.resolved_sms_inbound_token != dev.secret_key.get_secret_value()
    assert dev.resolved_sms_inbound_token == Settings(env="development", data_dir=tmp_path).resolved_sms_inbound_token
    other = Settings(env="development", data_dir=tmp_path, secret_key=SecretStr("x" * 40))
    assert other.resolved_sms_inbound_token != dev.resolved_sms_inbound_token
    assert Settings(env="test", data_dir=tmp_path).resolved_sms_inbound_token is None


def test_missing_token_401_wrong_token_403_query_token_accepted(client: TestClient, db: Session) -> None:
    assert send(client, "STOP", mid="m1", token=None).status_code == 401
    assert send(client, "STOP", mid="m1", token="wrong").status_code == 403
    assert send(client, "STOP", mid="m1", token=TOKEN[:-1]).status_code == 403
    assert _count(db, SmsInbound) == 0
    ok = client.post(f"{URL}?token={TOKEN}", json={"id": "m1", "from": PHONE, "body": "STOP"})
    assert ok.status_code == 200 and ok.json()["action"] == "unknown_sender"


# ---- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "status", "names"),
    [
        (b"{not json", "application/json", 422, "JSON"),
        (b"[1, 2]", "application/json", 422, "object"),
        (b'{"from": "+15550100111", "body": "7 0"}', "application/json", 422, "id"),
        (b'{"id": "x", "body": "7 0"}', "application/json", 422, "from"),
        (b'{"id": "x", "from": "not a number", "body": "7 0"}', "application/json", 422, "from"),
        (b'{"id": "x", "from": "+15550100111", "body": 7}', "application/json", 422, "body"),
        (b'{"id": "x", "from": "+15550100111"}', "application/json", 422, "body"),
        (b'{"id": "", "from": "+15550100111", "body": "7 0"}', "application/json", 422, "id"),
        (b'{"id": {"a": 1}, "from": "+15550100111", "body": "7 0"}', "application/json", 422, "id"),
        (b'{"id": "x", "from": "+15550100111", "body": "' + b"a" * 1601 + b'"}', "application/json", 422, "1600"),
        (b"From=%2B15550100111&Body=7+0", "application/x-www-form-urlencoded", 422, "MessageSid"),
        (b"From=%00&Body=7", "application/x-www-form-urlencoded", 400, "NUL"),
        (b"<xml/>", "text/xml", 415, "application/json"),
        (b"\xff\xfe", "application/json", 422, "JSON"),
        (b"a" * 20000, "application/json", 413, "bytes"),
    ],
)
def test_garbage_is_a_clear_4xx_and_stores_nothing(
    client: TestClient, db: Session, content: bytes, content_type: str, status: int, names: str
) -> None:
    _patient_with_check(db, 1)
    response = client.post(URL, content=content, headers={"Content-Type": content_type, "X-Needlecare-Token": TOKEN})
    assert response.status_code == status, response.text
    assert names in response.json()["detail"]
    assert _count(db, SmsInbound) == 0 and _count(db, SurveyResponse) == 0


# ---- keywords -------------------------------------------------------------------------------------------


def test_stop_start_help(client: TestClient, db: Session, clinic: Clinic) -> None:
    first, second = _patient_with_check(db, 1), _patient_with_check(db, 2)  # one phone, two patients
    stop = send(client, "Stop", mid="m-stop")
    assert stop.status_code == 200 and stop.json()["action"] == "stop"
    db.expire_all()
    for contact in (first, second):
        patient = db.get(Patient, contact.patient_id)
        assert patient is not None and patient.sms_opted_out_at is not None
    inbound = _inbound(db, stop.json()["inbound_id"])
    assert inbound.reply_text and "Riverside Physio" in inbound.reply_text and "START" in inbound.reply_text
    _reply_row(db, inbound.id or 0)

    start = send(client, "START", mid="m-start")
    assert start.json()["action"] == "start"
    db.expire_all()
    assert all(db.get(Patient, c.patient_id).sms_opted_out_at is None for c in (first, second))  # type: ignore[union-attr]

    help_ = send(client, "help", mid="m-help")
    text = _inbound(db, help_.json()["inbound_id"]).reply_text or ""
    assert help_.json()["action"] == "help"
    assert clinic.phone and clinic.phone in text and "Riverside Physio" in text and "Reply STOP to stop." in text
    assert _count(db, SurveyResponse) == 0 and _count(db, Notification) == 3


def test_twilio_form_shape(client: TestClient, db: Session) -> None:
    contact = _patient_with_check(db, 1)
    form = {"MessageSid": "SM123", "From": PHONE, "To": "+15550100999", "Body": "STOP"}
    response = client.post(URL, data=form, headers={"X-Needlecare-Token": TOKEN})
    assert response.status_code == 200 and response.json()["action"] == "stop"
    db.expire_all()
    assert db.get(Patient, contact.patient_id).sms_opted_out_at is not None  # type: ignore[union-attr]


# ---- answers --------------------------------------------------------------------------------------------


def test_a_reply_7_0_answers_the_24h_check(client: TestClient, db: Session, emitted: list[Any]) -> None:
    contact = _patient_with_check(db, 1)
    response = send(client, "7 0", mid="m-answer")
    assert response.status_code == 200 and response.json()["action"] == "answer"
    db.expire_all()
    stored = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact.id)).one()
    assert (stored.channel, stored.soreness, stored.redflags, stored.soreness_recall) == ("sms", 7, ["none"], "now")
    assert stored.bruise is None and stored.nprs_worst is None  # only the reply questions were asked
    assert db.get(Contact, contact.id).status == "answered"  # type: ignore[union-attr]
    inbound = _inbound(db, response.json()["inbound_id"])
    assert (inbound.contact_id, inbound.response_id, inbound.patient_id) == (
        contact.id,
        stored.id,
        contact.patient_id,
    )
    _reply_row(db, inbound.id or 0)
    text = inbound.reply_text or ""
    assert text.startswith("Riverside Physio: ") and text.endswith("Reply STOP to stop.")
    assert "7" not in text  # no answer echoed
    r10 = next(rule for rule in get_rules().rules if rule.id == "R10")  # soreness 7 at 24 h: the web's advice
    assert r10.patient_message in text
    assert [e.event for e in emitted] == ["needlecare.survey.answered"]


def test_a_reply_with_a_warning_sign_gets_the_advice_and_opens_a_case(
    client: TestClient, db: Session, clinic: Clinic
) -> None:
    contact = _patient_with_check(db, 1)
    response = send(client, "6 yes", mid="m-flag")
    assert response.json()["action"] == "answer"
    db.expire_all()
    stored = db.exec(select(SurveyResponse).where(SurveyResponse.contact_id == contact.id)).one()
    assert stored.redflags == [BY_TEXT] and stored.advice_tier == "EMERGENCY"
    [case] = db.exec(select(EscalationCase)).all()
    assert case.tier == "EMERGENCY" and case.response_id == stored.id
    text = _inbound(db, response.json()["inbound_id"]).reply_text or ""
    l2 = next(rule for rule in get_rules().rules if rule.id == "L2")
    assert l2.patient_message in text and "Reply STOP to stop." in text
    number = emergency_number(clinic)
    assert number is None or f"Emergency number: {number}." in text
    assert clinic.phone and clinic.phone in text


def test_a_repost_is_ignored(client: TestClient, db: Session) -> None:
    _patient_with_check(db, 1)
    first = send(client, "3 0", mid="same-id")
    again = send(client, "3 0", mid="same-id")
    assert first.json()["status"] == "received" and again.json()["status"] == "duplicate"
    assert again.json()["inbound_id"] == first.json()["inbound_id"] and again.status_code == 200
    assert _count(db, SmsInbound) == 1 and _count(db, SurveyResponse) == 1 and _count(db, Notification) == 1


def test_unknown_sender_is_stored_without_a_reply(client: TestClient, db: Session) -> None:
    _patient_with_check(db, 1)
    response = send(client, "7 0", mid="m-unknown", frm="+15550100777")
    assert response.json()["action"] == "unknown_sender"
    inbound = _inbound(db, response.json()["inbound_id"])
    assert inbound.patient_id is None and inbound.reply_text is None
    assert _count(db, Notification) == 0 and _count(db, SurveyResponse) == 0


def test_a_number_shared_by_two_patients_is_not_guessed(client: TestClient, db: Session) -> None:
    _patient_with_check(db, 1)
    _patient_with_check(db, 2)
    response = send(client, "2 0", mid="m-shared")
    assert response.json()["action"] == "no_open_check"
    text = _inbound(db, response.json()["inbound_id"]).reply_text or ""
    assert text.count("http://needlecare.test/s/") == 2 and "not saved" in text
    assert _count(db, SurveyResponse) == 0


def test_not_understood_gets_the_link_and_the_emergency_line(client: TestClient, db: Session) -> None:
    contact = _patient_with_check(db, 1)
    response = send(client, "7", mid="m-seven")
    assert response.json()["action"] == "unparsed"
    text = _inbound(db, response.json()["inbound_id"]).reply_text or ""
    assert "http://needlecare.test/s/" in text and "Or reply with 2 numbers" in text and "chest pain" in text
    assert _count(db, SurveyResponse) == 0
    db.expire_all()
    assert db.get(Contact, contact.id).status == "sent"  # type: ignore[union-attr]


def test_no_open_check_that_a_reply_answers(client: TestClient, db: Session, clinic: Clinic) -> None:
    session = make_session(db, 1, patient__phone=PHONE)
    make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(hours=-1))  # closed
    response = send(client, "4 0", mid="m-late")
    assert response.json()["action"] == "no_open_check"
    text = _inbound(db, response.json()["inbound_id"]).reply_text or ""
    assert "no check-in is waiting" in text and (clinic.phone or "") in text and "/s/" not in text
    assert _count(db, SurveyResponse) == 0


def test_a_check_that_takes_no_reply_gets_its_link(client: TestClient, db: Session) -> None:
    _patient_with_check(db, 1, step="check_72h")
    response = send(client, "4 0", mid="m-72")
    assert response.json()["action"] == "no_open_check"
    text = _inbound(db, response.json()["inbound_id"]).reply_text or ""
    assert "/s/" in text and "Or reply" not in text and _count(db, SurveyResponse) == 0


# ---- the validator --------------------------------------------------------------------------------------


def test_the_web_form_still_needs_all_its_items_and_never_takes_the_text_only_flag() -> None:
    protocol = get_protocol(INJURY)
    step = protocol.step("check_24h")
    reply = {"soreness": 3, "redflags": ["none"]}
    with pytest.raises(InvalidAnswers) as missing:
        validate_answers(reply, protocol=protocol, step=step, regions_needled=["calf"])
    assert {"nprs_worst", "bruise", "fainted"} <= set(missing.value.errors)
    full = {"soreness": 3, "nprs_worst": 3, "bruise": "none", "fainted": False, "redflags": [BY_TEXT]}
    with pytest.raises(InvalidAnswers) as by_web:
        validate_answers(full, protocol=protocol, step=step, regions_needled=["calf"])
    assert "redflags" in by_web.value.errors
    answers = validate_sms_reply(reply | {"redflags": [BY_TEXT]}, protocol=protocol, step=step, regions_needled=[])
    assert answers.ticked_redflags == [BY_TEXT]
    with pytest.raises(InvalidAnswers):  # a named checklist item cannot come by text
        validate_sms_reply(reply | {"redflags": ["pus"]}, protocol=protocol, step=step, regions_needled=[])
    with pytest.raises(InvalidAnswers):
        validate_sms_reply(reply, protocol=protocol, step=protocol.step("check_72h"), regions_needled=[])


def test_the_query_token_never_reaches_a_log() -> None:
    from needlecare.web.logfilter import redact

    line = f'127.0.0.1:5000 - "POST {URL}?token={TOKEN} HTTP/1.1" 200'
    assert TOKEN not in redact(line) and f"{URL}?token=[token] HTTP/1.1" in redact(line)
