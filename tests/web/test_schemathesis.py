"""Schemathesis over the app's own /openapi.json, on SQLite and PostgreSQL: no 5xx on any input, every refusal a
clear 4xx, and a refused request stores nothing.

Every operation of the schema is run with schemathesis' positive (fits the schema) and negative (breaks it)
generation; the survey and unsubscribe operations also with genuine links, so the answers reach the validators
and the database. A ``before_call`` hook signs each webhook body with the test clinic's secret (and names that
clinic), so bodies get past the signature to validation and storage. Bounded: ``MAX_EXAMPLES`` per operation and
mode, each example within ``DEADLINE``; rate limits are off so the fuzzer is not answered 429.
"""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode
from sqlmodel import Session, SQLModel, func, select

from models import AuditEvent, Clinic, Contact, Patient, Practitioner, SurveyResponse, TreatmentSession
from models.base import utcnow
from models.sms import SmsInbound
from needlecare.core.settings import Settings
from needlecare.core.signing import SIGNATURE_HEADER, sign
from needlecare.core.tokens import make_token
from needlecare.followup.unsubscribe import make_unsubscribe_token
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.records import make_contact, make_session

WEBHOOK = "/api/v1/events/session-completed"
SMS_INBOUND = "/api/v1/sms/inbound"
SMS_TOKEN = "schemathesis-inbound-token-0123456789"
MAX_EXAMPLES = 20
DEADLINE = timedelta(seconds=10)
PATIENT_TABLES: tuple[type[SQLModel], ...] = (
    TreatmentSession,
    Patient,
    Practitioner,
    Contact,
    SurveyResponse,
    AuditEvent,
    SmsInbound,
)
STORING = {
    f"POST {WEBHOOK}",
    "POST /api/v1/surveys/{token}/answers",
    "POST /s/{token}",
    "POST /u/{token}",
    f"POST {SMS_INBOUND}",
}


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    """Webhook bodies: the test clinic's id, serialised once, signed over exactly the bytes sent. Inbound SMS posts:
    the inbound token, so bodies get past it to the parser and the database."""
    if case.operation is not None and case.operation.path == SMS_INBOUND:
        case.headers = {**(case.headers or {}), "X-Needlecare-Token": SMS_TOKEN}
        return
    if case.operation is None or case.operation.path != WEBHOOK or case.method.upper() != "POST":
        return
    body = case.body
    if isinstance(body, dict):
        body = {**body, "clinic_id": "riverside-physio"}
    try:
        raw = json.dumps(body).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return  # not JSON at all: sent as generated, unsigned
    kwargs["data"] = raw
    case.headers["Content-Type"] = "application/json"
    case.headers[SIGNATURE_HEADER] = sign(raw, CLINIC_SECRET)


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    limits_off = {"rate_limits": False} if "rate_limits" in Settings.model_fields else {}
    return settings.model_copy(update={**limits_off, "sms_inbound_token": SecretStr(SMS_TOKEN)})


def _counts(db: Session) -> dict[str, int]:
    db.expire_all()
    return {table.__name__: db.exec(select(func.count()).select_from(table)).one() for table in PATIENT_TABLES}


def _clear(response: Any) -> bool:
    """A refusal says what is wrong: JSON with a ``detail``, or an HTML page with a title."""
    content_type = " ".join(response.headers.get("content-type", []))
    text = response.content.decode("utf-8", "replace")
    if "application/json" in content_type:
        data = json.loads(text)
        return isinstance(data, dict) and bool(data.get("detail"))
    return "text/html" in content_type and "<title>" in text and "<h1" in text


def _links(db: Session, settings: Settings) -> dict[str, list[str]]:
    secret = settings.secret_key.get_secret_value()
    survey: list[str] = []
    patients: list[int] = []
    for n in range(1, 4):
        session = make_session(db, n)
        contact = make_contact(db, session, "check_24h")
        assert contact.id is not None
        survey.append(make_token(contact.id, contact.patient_id, contact.step_id, utcnow() + timedelta(days=1), secret))
        patients.append(contact.patient_id)
    return {"survey": survey, "unsubscribe": [make_unsubscribe_token(p, secret) for p in patients]}


def _forged_links(settings: Settings, kind: str) -> st.SearchStrategy[str]:
    """Links signed with the app's own key (the development key is published) naming any row id at all,
    beyond 32 and 64 bits too: what someone who read the source can send."""
    secret = settings.secret_key.get_secret_value()
    ids = st.one_of(st.integers(min_value=0, max_value=2**70), st.sampled_from([2**31, 2**63, 10**30]))
    if kind == "unsubscribe":
        return ids.map(lambda patient_id: make_unsubscribe_token(patient_id, secret))
    expiry = utcnow() + timedelta(days=1)
    return st.tuples(ids, ids).map(lambda pair: make_token(pair[0], pair[1], "check_24h", expiry, secret))


def _with_token(pair: tuple[schemathesis.Case, str]) -> schemathesis.Case:
    case, token = pair
    case.path_parameters = {**(case.path_parameters or {}), "token": token}
    return case


def _run(operation: Any, strategy: Any, db: Session, seen: dict[int, int]) -> None:
    @given(case=strategy)
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=DEADLINE,
        phases=[Phase.explicit, Phase.generate],
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        before = _counts(db)
        response = case.call()
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
        if 400 <= response.status_code < 500:
            assert _clear(response), f"{case.method} {case.path}: {response.status_code} without a reason"
            assert _counts(db) == before, f"{case.method} {case.path}: refused with {response.status_code} but stored"
        elif operation.label not in STORING:
            assert _counts(db) == before, f"{operation.label} stored rows"

    check()


@pytest.fixture
def schema(app_settings: Settings, clinic: Clinic) -> Iterator[Any]:
    app = create_app(app_settings)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_of_the_schema_survives_fuzzing(schema: Any, db: Session, app_settings: Settings) -> None:
    links = _links(db, app_settings)
    labels = []
    unbreakable: list[str] = []
    seen: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        _run(operation, operation.as_strategy(generation_mode=GenerationMode.POSITIVE), db, seen)
        try:
            _run(operation, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), db, seen)
        except Unsatisfiable:  # nothing in the operation to break (no body, at most a string path parameter)
            unbreakable.append(operation.label)
        kind = "survey" if "{token}" in operation.path and "/u/" not in operation.path else "unsubscribe"
        if "{token}" in operation.path:
            for token in links[kind]:
                strategy = operation.as_strategy(path_parameters={"token": token})
                _run(operation, strategy, db, seen)
            forged = st.tuples(operation.as_strategy(), _forged_links(app_settings, kind)).map(_with_token)
            _run(operation, forged, db, seen)
    assert f"POST {WEBHOOK}" in labels and "POST /s/{token}" in labels and "POST /login" in labels
    assert f"POST {SMS_INBOUND}" in labels
    # Only operations whose every input is a plain string (or that take none) have nothing to break.
    with_body = {
        f"POST {WEBHOOK}",
        "POST /api/v1/surveys/{token}/answers",
        "POST /s/{token}",
        "POST /login",
        f"POST {SMS_INBOUND}",
    }
    assert not with_body & set(unbreakable), unbreakable
    assert not any(code >= 500 for code in seen)
    assert any(200 <= code < 300 for code in seen) and any(400 <= code < 500 for code in seen), seen
