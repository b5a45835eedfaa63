"""Rate limits (needlecare/web/ratelimit.py) on the real app, with their state in the real database (SQLite and
PostgreSQL): 429 with Retry-After on the webhook, the survey answers and the login, shared by app instances."""

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import AuditEvent, Clinic, RateBucket
from needlecare.core.db import get_engine
from needlecare.core.settings import Settings
from needlecare.core.signing import sign
from needlecare.web import ratelimit
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.factories import event_body

WEBHOOK = "/api/v1/events/session-completed"
ANSWERS = "/api/v1/surveys/{}/answers"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def app_with(settings: Settings, **limits: Any) -> FastAPI:
    return create_app(settings.model_copy(update=limits))


@pytest.fixture
def make_client() -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(app: FastAPI, address: str = "203.0.113.7") -> TestClient:
        client = TestClient(app, raise_server_exceptions=False, follow_redirects=False, client=(address, 40000))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def post_event(client: TestClient, n: int, *, signed: bool = True, clinic_id: str = "riverside-physio") -> Any:
    raw = json.dumps(event_body(n, clinic_id=clinic_id)).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Needlecare-Signature"] = sign(raw, CLINIC_SECRET)
    return client.post(WEBHOOK, content=raw, headers=headers)


def assert_429(response: Any) -> int:
    assert response.status_code == 429, response.text
    retry = response.headers["retry-after"]
    assert retry.isdigit() and int(retry) >= 1
    return int(retry)


# ---- the bucket itself ----------------------------------------------------------------------------------


def test_a_bucket_lets_the_burst_through_then_refills_at_the_rate(db_url: str) -> None:
    engine = get_engine(db_url)
    verdicts = [ratelimit.hit(engine, "t:k", rate=0.5, burst=3, now=1000.0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after == 2  # one token at 0.5/s
    assert not ratelimit.hit(engine, "t:k", rate=0.5, burst=3, now=1001.0).allowed
    assert ratelimit.hit(engine, "t:k", rate=0.5, burst=3, now=1002.1).allowed
    assert ratelimit.hit(engine, "t:other", rate=0.5, burst=3, now=1000.0).allowed  # keys are separate


def test_parallel_requests_never_take_more_than_the_burst(db_url: str) -> None:
    engine = get_engine(db_url)
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda _: ratelimit.hit(engine, "t:race", rate=0.001, burst=10), range(40)))
    assert sum(v.allowed for v in verdicts) == 10


def test_the_growing_delay_doubles_and_is_never_a_lockout(db_url: str) -> None:
    engine = get_engine(db_url)
    now = 5000.0

    def attempt(at: float) -> ratelimit.Verdict:
        return ratelimit.attempt(engine, "t:acct", free=2, first=4, longest=10, now=at)

    assert attempt(now).allowed and attempt(now).allowed  # the free attempts
    refused = attempt(now + 1)  # then each attempt waits: 4 s after the last one
    assert not refused.allowed and refused.retry_after == 3
    assert attempt(now + 4).allowed  # then 8 s
    assert not attempt(now + 11.9).allowed
    assert attempt(now + 12).allowed  # then 10 s (the longest), not 16
    assert not attempt(now + 21.9).allowed
    assert attempt(now + 22).allowed
    ratelimit.succeeded(engine, "t:acct")
    assert attempt(now + 22).allowed and attempt(now + 22).allowed


def test_keys_store_no_address_token_or_email(settings: Settings, db: Session) -> None:
    key = ratelimit.key_for(settings, "login-account", "dana@riverside.example")
    assert key.startswith("login-account:") and "dana" not in key and len(key) <= 100
    assert key == ratelimit.key_for(settings, "login-account", "dana@riverside.example")
    assert key != ratelimit.key_for(settings, "login-client", "dana@riverside.example")


def test_an_unknown_limit_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rate limit"):
        ratelimit.rate_limited("everything")


# ---- webhook --------------------------------------------------------------------------------------------


def test_webhook_answers_429_per_clinic_and_address(settings: Settings, clinic: Clinic, make_client: Any) -> None:
    app = app_with(settings, webhook_burst=3, webhook_rate=0.01)
    sender = make_client(app)
    for n in range(3):
        assert post_event(sender, n + 1).status_code in (200, 202)
    assert_429(post_event(sender, 4))
    # A stranger's requests naming the same clinic do not use up the clinic's own sender's budget, and the other
    # way round: the stranger's own address has its own bucket.
    stranger = make_client(app, "198.51.100.9")
    assert post_event(stranger, 5, signed=False).status_code == 401
    # Another clinic named by the same sender has its own bucket too (unknown here: a 422, not a 429).
    assert post_event(sender, 6, clinic_id="hillside").status_code == 422


def test_default_webhook_limit_takes_a_fault_suite_burst(settings: Settings, clinic: Clinic, make_client: Any) -> None:
    """tests/faults posts 300 events back to back from one address: the defaults must not throttle that."""
    client = make_client(create_app(settings))
    raw = json.dumps(event_body(1)).encode()
    codes = {
        client.post(WEBHOOK, content=raw, headers={"Content-Type": "application/json"}).status_code for _ in range(300)
    }
    assert 429 not in codes and codes == {401}


def test_limits_are_shared_by_app_instances(settings: Settings, clinic: Clinic, make_client: Any) -> None:
    """Two apps (two web workers) on one database share one bucket: the state is not in process memory."""
    first = make_client(app_with(settings, webhook_burst=4, webhook_rate=0.01))
    second = make_client(app_with(settings, webhook_burst=4, webhook_rate=0.01))
    assert [post_event(c, n, signed=False).status_code for n, c in enumerate([first, second, first, second])] == [
        401
    ] * 4
    assert_429(post_event(second, 9, signed=False))
    assert_429(post_event(first, 10, signed=False))


def test_rate_limits_off_lets_everything_through(settings: Settings, clinic: Clinic, make_client: Any) -> None:
    client = make_client(app_with(settings, webhook_burst=1, webhook_rate=0.01, rate_limits=False))
    assert {post_event(client, n, signed=False).status_code for n in range(5)} == {401}


# ---- survey answers -------------------------------------------------------------------------------------


def test_survey_answers_are_limited_per_link(settings: Settings, db: Session, make_client: Any) -> None:
    client = make_client(app_with(settings, survey_token_burst=3, survey_token_rate=0.01))
    url = ANSWERS.format("some.link")
    assert [client.post(url, json={"soreness": 3}).status_code for _ in range(3)] == [404, 404, 404]
    retry = assert_429(client.post(url, json={"soreness": 3}))
    assert retry >= 90  # one answer every 100 s
    assert_429(client.post("/s/some.link", data={"soreness": "3"}))  # the form shares the link's bucket
    assert client.post(ANSWERS.format("other.link"), json={}).status_code == 404


def test_survey_answers_are_limited_per_client(settings: Settings, db: Session, make_client: Any) -> None:
    app = app_with(settings, survey_client_burst=4, survey_client_rate=0.01)
    client = make_client(app)
    codes = [client.post(ANSWERS.format(f"link{n}.x"), json={}).status_code for n in range(4)]
    assert codes == [404] * 4
    assert_429(client.post(ANSWERS.format("link9.x"), json={}))
    assert make_client(app, "192.0.2.44").post(ANSWERS.format("link9.x"), json={}).status_code == 404


# ---- login ----------------------------------------------------------------------------------------------


def test_login_is_limited_per_client_before_any_password_is_checked(
    settings: Settings, db: Session, clinic: Clinic, make_client: Any
) -> None:
    app = app_with(settings, login_client_burst=3, login_client_rate=0.01)
    client = make_client(app)
    for n in range(3):
        page = client.get("/login")
        token = CSRF.search(page.text)
        assert token
        data = {"email": f"guess{n}@riverside.example", "password": "a guessed password", "csrf": token.group(1)}
        assert client.post("/login", data=data).status_code == 401
    assert_429(client.post("/login", data=data))
    failed = db.exec(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "staff.login_failed"))
    assert failed.one() == 3  # the refused attempt was not checked (no hashing)
    assert make_client(app, "192.0.2.50").get("/login").status_code == 200
    assert db.exec(select(func.count()).select_from(RateBucket)).one() >= 1


def test_the_login_429_is_the_login_page_saying_how_long_to_wait(
    settings: Settings, db: Session, clinic: Clinic, make_client: Any
) -> None:
    client = make_client(app_with(settings, login_client_burst=1, login_client_rate=0.05))
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token
    data = {"email": "guess@riverside.example", "password": "a guessed password", "csrf": token.group(1)}
    assert client.post("/login", data=data).status_code == 401
    refused = client.post("/login", data=data)
    assert assert_429(refused) == 20
    assert "Too many logins from this network. Wait 20 seconds" in refused.text
    assert refused.headers["content-type"].startswith("text/html") and 'name="csrf"' in refused.text
