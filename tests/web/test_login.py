"""Staff login pages and the dependencies staff routes use (needlecare/web/auth.py), on SQLite and PostgreSQL."""

import hashlib
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyotp
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import AuditEvent, Clinic, ClinicCreate, StaffUser, WebSession
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.intake.clinics import add_clinic
from needlecare.staff import auth, totp
from needlecare.web import ratelimit
from needlecare.web.app import create_app
from needlecare.web.auth import SESSION_COOKIE, CsrfChecked, CurrentUser, ensure_same_clinic, safe_next
from needlecare.web.templating import templates

PASSWORD = "correct horse battery staple"
EMAIL = "dana@riverside.example"
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]*)"')

# A staff page as the lead's pages will be written: extends _staff.html.j2, a POST form with csrf_input().
_PAGE = templates.env.from_string(
    """{% extends "_staff.html.j2" %}
{% block title %}Test page{% endblock %}
{% block content %}<h1>Protected</h1><form method="post" action="/staff-test">{{ csrf_input() }}</form>{% endblock %}"""
)

staff_router = APIRouter()


@staff_router.get("/staff-test", response_class=HTMLResponse)
def staff_page(request: Request, user: CurrentUser) -> HTMLResponse:
    return HTMLResponse(_PAGE.render(request=request))


@staff_router.post("/staff-test")
def staff_post(user: CurrentUser, form: CsrfChecked) -> PlainTextResponse:
    return PlainTextResponse(f"saved {form.get('note', '')} for {user.clinic_id}")


@staff_router.get("/clinics/{clinic_id}/thing")
def clinic_thing(clinic_id: str, user: CurrentUser) -> PlainTextResponse:
    ensure_same_clinic(user, clinic_id)
    return PlainTextResponse(f"thing of {clinic_id}")


# ---- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture
def user(db: Session, clinic: Clinic) -> StaffUser:
    return auth.create_user(db, clinic.id, EMAIL, "Dana Reyes", PASSWORD)


def make_app(settings: Settings) -> FastAPI:
    application = create_app(settings)
    application.include_router(staff_router)
    return application


@pytest.fixture
def client(settings: Settings, user: StaffUser) -> Iterator[TestClient]:
    with TestClient(make_app(settings), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def secret_of(client: TestClient) -> str:
    """The secret key of the app under test."""
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    return settings.secret_key.get_secret_value()


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, html
    return match.group(1)


def login(client: TestClient, password: str = PASSWORD, next_path: str = "/staff-test", **extra: str) -> Any:
    page = client.get("/login", params={"next": next_path})
    assert page.status_code == 200
    data = {"email": EMAIL, "password": password, "csrf": csrf_from(page.text), "next": next_path, **extra}
    return client.post("/login", data=data)


def sessions(db: Session) -> list[WebSession]:
    db.expire_all()
    return list(db.exec(select(WebSession)).all())


def set_cookie_headers(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]


# ---- login --------------------------------------------------------------------------------------------


def test_login_page_is_an_accessible_form(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<label for="email">' in page.text and '<label for="password">' in page.text
    assert 'autocomplete="current-password"' in page.text and 'action="/login"' in page.text
    assert csrf_from(page.text)
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    [pre] = set_cookie_headers(page)
    assert pre.startswith("nc_login=") and "httponly" in pre.lower()


def test_login_sets_an_http_only_session_cookie_and_goes_to_next(client: TestClient, db: Session) -> None:
    response = login(client, next_path="/staff-test?tab=open")
    assert response.status_code == 303
    assert response.headers["location"] == "/staff-test?tab=open"
    [cookie] = [c for c in set_cookie_headers(response) if c.startswith(f"{SESSION_COOKIE}=")]
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # public_base_url is http in tests
    token = cookie.split(";")[0].split("=", 1)[1]
    [stored] = sessions(db)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    page = client.get("/staff-test")
    assert page.status_code == 200
    assert "Dana Reyes" in page.text and 'action="/logout"' in page.text
    assert 'href="/cases"' in page.text and 'href="/dashboard"' in page.text
    assert page.headers["cache-control"] == "no-store"  # logged-in pages are never cached
    assert csrf_from(page.text) == auth.csrf_token(secret_of(client), token)


def test_cookie_is_secure_behind_https(settings: Settings, user: StaffUser) -> None:
    secure = settings.model_copy(update={"public_base_url": "https://care.example"})
    with TestClient(make_app(secure), base_url="https://testserver", follow_redirects=False) as c:
        response = login(c)
    assert response.status_code == 303
    [cookie] = [c for c in set_cookie_headers(response) if c.startswith(f"{SESSION_COOKIE}=")]
    assert "secure" in cookie.lower()


def test_wrong_password_shows_the_error_and_stores_nothing(client: TestClient, db: Session) -> None:
    response = login(client, password="not the password")
    assert response.status_code == 401
    assert "email or password is wrong" in response.text
    assert 'value="dana@riverside.example"' in response.text and "not the password" not in response.text
    assert 'aria-invalid="true"' in response.text and "err-form" in response.text
    assert not any(c.startswith(f"{SESSION_COOKIE}=") for c in set_cookie_headers(response))
    assert sessions(db) == []
    assert client.get("/staff-test").status_code == 303


def test_unknown_email_gets_the_same_answer(client: TestClient) -> None:
    page = client.get("/login")
    data = {"email": "nobody@riverside.example", "password": PASSWORD, "csrf": csrf_from(page.text), "next": ""}
    response = client.post("/login", data=data)
    assert response.status_code == 401 and "email or password is wrong" in response.text


def test_missing_fields_are_marked_beside_the_field(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"email": "", "password": "", "csrf": csrf_from(page.text)})
    assert response.status_code == 422
    assert 'id="err-email"' in response.text and 'id="err-password"' in response.text
    assert 'aria-describedby="err-email"' in response.text


@pytest.mark.parametrize(
    "target", ["//evil.example", "https://evil.example/x", "/\\evil.example", "/\t/evil.example", "evil", ""]
)
def test_next_outside_the_site_is_ignored(client: TestClient, target: str) -> None:
    # The form's next field (a URL with a control character in its query is refused by the input boundary).
    page = client.get("/login")
    data = {"email": EMAIL, "password": PASSWORD, "csrf": csrf_from(page.text), "next": target}
    response = client.post("/login", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == "/cases"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/cases/12?tab=notes", "/cases/12?tab=notes"),
        ("/dashboard", "/dashboard"),
        ("//evil.example", "/cases"),
        ("///evil.example", "/cases"),
        ("http://evil.example", "/cases"),
        ("javascript:alert(1)", "/cases"),
        ("/\\\\evil.example", "/cases"),
        ("/\n/evil.example", "/cases"),
        ("/login", "/cases"),
        (None, "/cases"),
    ],
)
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_login_without_or_with_a_wrong_csrf_token_is_refused(client: TestClient, db: Session) -> None:
    client.get("/login")
    missing = client.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert missing.status_code == 403 and "expired" in missing.text
    wrong = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": "forged"})
    assert wrong.status_code == 403
    # A token made for someone else's pre-login cookie (login CSRF) does not fit this browser's cookie.
    other = auth.csrf_token(secret_of(client), "attackers-own-pre-login-cookie", purpose="login")
    assert client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": other}).status_code == 403
    assert sessions(db) == []
    # The refusal page is a fresh form that works.
    retry = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": csrf_from(wrong.text)})
    assert retry.status_code == 303


def test_login_page_redirects_when_already_logged_in(client: TestClient) -> None:
    login(client)
    assert client.get("/login", params={"next": "/staff-test"}).headers["location"] == "/staff-test"


def test_a_new_login_replaces_the_old_session(client: TestClient, db: Session) -> None:
    login(client)
    first = client.cookies[SESSION_COOKIE]
    assert client.get("/login").status_code == 303  # logged in already: no form, so post one directly
    client.cookies.set("nc_login", "p" * 43)
    csrf = auth.csrf_token(secret_of(client), "p" * 43, purpose="login")
    assert client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": csrf}).status_code == 303
    assert client.cookies[SESSION_COOKIE] != first
    assert len(sessions(db)) == 1


# ---- protected routes, CSRF on staff forms, clinics ----------------------------------------------------


def test_anonymous_request_is_sent_to_login_with_next(client: TestClient) -> None:
    response = client.get("/staff-test", params={"tab": "open"})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/staff-test%3Ftab%3Dopen"
    follow = client.get(response.headers["location"])
    assert 'name="next" value="/staff-test?tab=open"' in follow.text


def test_a_forged_cookie_is_sent_to_login_and_cleared(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "made-up-token")
    response = client.get("/staff-test")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert any(c.startswith(f'{SESSION_COOKIE}=""') or "max-age=0" in c.lower() for c in set_cookie_headers(response))


def test_staff_post_needs_the_csrf_token(client: TestClient) -> None:
    login(client)
    csrf = csrf_from(client.get("/staff-test").text)
    missing = client.post("/staff-test", data={"note": "x"})
    assert missing.status_code == 403 and "This form has expired" in missing.text
    wrong = client.post("/staff-test", data={"note": "x", "csrf": csrf[:-2] + "AA"})
    assert wrong.status_code == 403
    as_json = client.post("/staff-test", json={"note": "x", "csrf": csrf})
    assert as_json.status_code == 403
    ok = client.post("/staff-test", data={"note": "x", "csrf": csrf})
    assert ok.status_code == 200 and ok.text == "saved x for riverside-physio"


def test_csrf_token_of_another_session_is_refused(client: TestClient, db: Session, user: StaffUser) -> None:
    other_token = auth.start_session(db, user, utcnow())
    login(client)
    other_csrf = auth.csrf_token(secret_of(client), other_token)
    assert client.post("/staff-test", data={"csrf": other_csrf}).status_code == 403


def test_user_of_one_clinic_gets_404_for_another(client: TestClient, db: Session) -> None:
    add_clinic(
        db, ClinicCreate(id="hillside", name="Hillside", email="desk@hillside.example"), actor="test", secret="s"
    )
    login(client)
    assert client.get("/clinics/riverside-physio/thing").status_code == 200
    other = client.get("/clinics/hillside/thing")
    assert other.status_code == 404
    assert client.get("/clinics/no-such-clinic/thing").status_code == 404  # the same answer as a missing one


# ---- logout -------------------------------------------------------------------------------------------


def test_logout_ends_the_session_on_the_server(client: TestClient, db: Session) -> None:
    login(client)
    old_cookie = client.cookies[SESSION_COOKIE]
    csrf = csrf_from(client.get("/staff-test").text)
    response = client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login?logged_out=1"
    assert any(c.startswith(f'{SESSION_COOKIE}=""') or "max-age=0" in c.lower() for c in set_cookie_headers(response))
    assert sessions(db) == []
    assert "You are logged out" in client.get("/login?logged_out=1").text
    client.cookies.set(SESSION_COOKIE, old_cookie)  # a copy of the old cookie is worthless now
    assert client.get("/staff-test").status_code == 303
    actions = [e.action for e in db.exec(select(AuditEvent).where(AuditEvent.entity == "staff_user")).all()]
    assert actions.count("staff.login") == 1 and actions.count("staff.logout") == 1


def test_logout_without_csrf_is_refused_and_keeps_the_session(client: TestClient, db: Session) -> None:
    login(client)
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/staff-test").status_code == 200
    assert len(sessions(db)) == 1


def test_nothing_about_the_login_reaches_the_audit_detail(client: TestClient, db: Session) -> None:
    login(client, password="a wrong password")
    login(client)
    db.expire_all()
    rows = db.exec(select(AuditEvent).where(AuditEvent.entity == "staff_user")).all()
    assert {r.action for r in rows} >= {"staff.login", "staff.login_failed"}
    for row in rows:
        text = f"{row.actor} {row.entity_id} {row.detail}"
        assert "dana" not in text.lower() and PASSWORD not in text and "wrong" not in text
    assert db.exec(select(func.count()).select_from(StaffUser)).one() == 1


def test_oversized_or_overfull_forms_are_refused(client: TestClient) -> None:
    login(client)
    assert client.post("/staff-test", data={"note": "x" * 70_000}).status_code == 413
    assert (
        client.post(
            "/staff-test",
            content="&".join(f"f{i}=1" for i in range(600)),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 400
    )


# ---- guessing: growing delay, never a lockout -----------------------------------------------------------


def slow_app(settings: Settings, **changes: Any) -> FastAPI:
    """The app with a per-email delay that starts after two failures (1 s, doubling)."""
    limits = {"login_free_failures": 2, "login_delay_seconds": 1.0, "login_delay_max_seconds": 4.0, **changes}
    return make_app(settings.model_copy(update=limits))


def test_repeated_wrong_passwords_slow_the_email_down_instead_of_locking_it(
    settings: Settings, user: StaffUser, db: Session
) -> None:
    with TestClient(slow_app(settings), follow_redirects=False) as stranger:
        assert login(stranger, password="guess number one").status_code == 401
        assert login(stranger, password="guess number two").status_code == 401
        refused = login(stranger)  # even the right password waits: the delay is what stops guessing
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "Wait 1 seconds" in refused.text and "nothing is locked" in refused.text
        assert not any(c.startswith(f"{SESSION_COOKIE}=") for c in set_cookie_headers(refused))
        time.sleep(1.1)
        assert login(stranger).status_code == 303  # once the delay has passed the account works
    db.refresh(user)
    assert user.locked_until is None


def test_an_unknown_email_is_slowed_down_the_same_way(settings: Settings, user: StaffUser) -> None:
    with TestClient(slow_app(settings), follow_redirects=False) as client:
        codes = []
        for _ in range(3):
            page = client.get("/login")
            data = {"email": "nobody@riverside.example", "password": "a guess", "csrf": csrf_from(page.text)}
            codes.append(client.post("/login", data=data).status_code)
    assert codes == [401, 401, 429]


def test_a_browser_that_logged_in_before_is_not_held_up_by_strangers(settings: Settings, user: StaffUser) -> None:
    app = slow_app(settings, login_delay_seconds=60.0, login_delay_max_seconds=60.0)
    with TestClient(app, follow_redirects=False) as owner, TestClient(app, follow_redirects=False) as stranger:
        first = login(owner)
        assert first.status_code == 303
        [device] = [c for c in set_cookie_headers(first) if c.startswith("nc_device=")]
        assert "httponly" in device.lower() and "path=/login" in device.lower()
        owner.post("/logout", data={"csrf": csrf_from(owner.get("/staff-test").text)})
        for n in range(4):
            login(stranger, password=f"stranger guess {n}")
        assert login(stranger).status_code == 429
        with TestClient(app, follow_redirects=False) as forger:
            forger.cookies.set("nc_device", f"{user.id}.forged.signature")
            assert login(forger).status_code == 429  # a forged device cookie counts for nothing
        assert login(owner).status_code == 303  # the owner's browser carries the device cookie


def test_at_most_the_configured_number_of_passwords_are_hashed_at_once(settings: Settings, user: StaffUser) -> None:
    app = make_app(settings.model_copy(update={"login_hash_concurrency": 2, "login_free_failures": 50}))
    with TestClient(app, follow_redirects=False) as client:
        forms = []
        for _ in range(8):
            page = client.get("/login")
            forms.append((dict(client.cookies), csrf_from(page.text)))

        def attempt(form: tuple[dict[str, str], str]) -> int | str:
            cookies, csrf = form
            with TestClient(app, follow_redirects=False, cookies=cookies) as own:
                data = {"email": EMAIL, "password": "not the password", "csrf": csrf}
                response = own.post("/login", data=data)
                return response.status_code if response.status_code != 429 else response.text

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(attempt, forms))
    assert codes == [401] * 8
    hashing = ratelimit.slots(app, "login-hash", 2)
    assert 1 <= hashing.peak <= 2 and hashing.busy == 0  # every check went through the slots, two at most


def test_no_free_password_check_is_a_503_with_retry_after(settings: Settings, user: StaffUser) -> None:
    app = make_app(settings.model_copy(update={"login_hash_concurrency": 1, "login_hash_wait_seconds": 0}))
    hashing = ratelimit.slots(app, "login-hash", 1)
    with TestClient(app, follow_redirects=False) as client:
        assert hashing.take(0)  # another login is being checked
        try:
            busy = login(client)
        finally:
            hashing.give_back()
        assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        assert "busy checking other logins" in busy.text
        assert login(client).status_code == 303


# ---- TOTP second factor ----------------------------------------------------------------------------------


@pytest.fixture
def totp_secret(db: Session, user: StaffUser) -> str:
    secret = totp.new_totp_secret()
    totp.enable_totp(db, user, secret)
    return secret


def code_step(client: TestClient) -> Any:
    response = login(client)
    assert response.status_code == 200, response.text
    assert 'name="code"' in response.text and 'autocomplete="one-time-code"' in response.text
    assert 'name="password"' not in response.text
    assert not any(c.startswith(f"{SESSION_COOKIE}=") for c in set_cookie_headers(response))
    return response


def test_totp_user_needs_the_code_after_the_password(
    client: TestClient, db: Session, totp_secret: str, user: StaffUser
) -> None:
    page = code_step(client)
    assert sessions(db) == []
    assert client.get("/staff-test").status_code == 303  # the right password alone is not a login
    wrong = client.post("/login", data={"step": "code", "code": "000000", "csrf": csrf_from(page.text), "next": "/x"})
    assert wrong.status_code == 401 and "wrong or was already used" in wrong.text
    code = pyotp.TOTP(totp_secret).now()
    done = client.post("/login", data={"step": "code", "code": code, "csrf": csrf_from(wrong.text), "next": "/x"})
    assert done.status_code == 303 and done.headers["location"] == "/x"
    assert client.get("/staff-test").status_code == 200
    # The same code cannot be used again, even straight after, in another login.
    client.cookies.delete(SESSION_COOKIE)
    again = code_step(client)
    replay = client.post("/login", data={"step": "code", "code": code, "csrf": csrf_from(again.text)})
    assert replay.status_code == 401


def test_the_code_step_without_the_password_step_is_refused(
    client: TestClient, db: Session, totp_secret: str, user: StaffUser
) -> None:
    page = client.get("/login")
    code = pyotp.TOTP(totp_secret).now()
    client.cookies.set("nc_2fa", f"{user.id}.9999999999.forged", path="/login")
    response = client.post("/login", data={"step": "code", "code": code, "csrf": csrf_from(page.text)})
    assert response.status_code == 403 and "Log in again" in response.text
    assert sessions(db) == []
