"""Practitioner login for the staff pages: /login, /logout and the dependencies staff routes use.

Use in a staff router::

    from needlecare.web.auth import CsrfChecked, CurrentUser, ensure_same_clinic

    @router.get("/cases/{case_id}")
    def case_page(case_id: int, request: Request, user: CurrentUser, db: DbDep) -> Response:
        case = db.get(EscalationCase, case_id)
        if case is None:
            raise HTTPException(404)
        ensure_same_clinic(user, case.clinic_id)  # 404, never 403: other clinics' ids stay unknown
        ...

    @router.post("/cases/{case_id}/acknowledge")
    def acknowledge(case_id: int, user: CurrentUser, form: CsrfChecked, db: DbDep) -> Response:
        note = form.get("note", "")  # the parsed form (application/x-www-form-urlencoded)
        ...

Templates extend ``_staff.html.j2`` (blocks ``title`` and ``content``) and put ``{{ csrf_input() }}`` inside
every ``<form method="post">``. An anonymous request to a page that takes ``CurrentUser`` is redirected (303)
to ``/login?next=<path>``; ``install(app)`` registers that redirect, the 403 page for a failed CSRF check and
no-store/anti-framing headers on every response to a logged-in user.

The session cookie ``nc_session`` is HttpOnly, SameSite=Lax, Path=/ and Secure when the public base URL is
https. The login form is protected against login CSRF by a pre-session cookie (``nc_login``) whose HMAC the
form must carry (signed double submit).

Guessing is slowed, never locked out (:mod:`needlecare.web.ratelimit`): POST /login is limited per client
address, and per email address every attempt after ``login_free_failures`` without a success waits a growing
delay (429 with Retry-After). A browser that logged in to the account before carries a signed device cookie
(``nc_device``, Path=/login) and is not held up by that per-email delay, so strangers cannot keep the owner out.
At most ``login_hash_concurrency`` password checks run at once per process (503 with Retry-After past a wait).
A user with a TOTP second factor gets a second step after the right password: a signed five-minute cookie
(``nc_2fa``) names the user, and the session starts only after a valid code.
"""

import logging
import secrets
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import pass_context
from markupsafe import Markup, escape
from sqlmodel import Session
from starlette.datastructures import FormData, MutableHeaders, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models import StaffUser
from models.base import utcnow
from needlecare.core.settings import Settings
from needlecare.staff import auth, totp
from needlecare.web import loginguard, ratelimit
from needlecare.web.bodies import BodyTooLarge, read_limited
from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.loginguard import DEVICE_COOKIE, DEVICE_MAX_AGE, PENDING_COOKIE, PENDING_SECONDS
from needlecare.web.templating import templates

log = logging.getLogger("needlecare.web.auth")

SESSION_COOKIE = "nc_session"
LOGIN_COOKIE = "nc_login"
BUSY_RETRY_SECONDS = 5
CSRF_FIELD = "csrf"
DEFAULT_NEXT = "/cases"
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 500
MAX_EMAIL_LENGTH = 320

# Pages for (or after) a login: never cached, never framed, no referrer outside the site.
STAFF_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(tags=["staff login"], include_in_schema=False)


class LoginRequired(Exception):
    """Raised by require_user; install() turns it into a 303 to /login?next=…."""

    def __init__(self, next_path: str | None, *, clear_cookie: bool) -> None:
        super().__init__("login required")
        self.next_path = next_path
        self.clear_cookie = clear_cookie


class CsrfFailed(Exception):
    """Raised by the CsrfChecked dependency; install() answers 403 with a page saying what to do."""


# ---- helpers ----------------------------------------------------------------------------------------------


def _secret(settings: Settings) -> str:
    return settings.secret_key.get_secret_value()


def _secure(settings: Settings) -> bool:
    return settings.public_base_url.lower().startswith("https")


def safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (other hosts, schemes, //host, backslashes) → DEFAULT_NEXT."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return DEFAULT_NEXT
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return DEFAULT_NEXT  # browsers drop tabs/newlines and read \ as /: "/\t/evil" is "//evil"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return DEFAULT_NEXT
    return value


def _set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=_secure(settings), path="/"
    )  # no Max-Age: the server decides when the session ends, the browser forgets it when closed


def _delete_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(settings))


async def read_form(request: Request) -> FormData:
    """The url-encoded form of a POST (no python-multipart needed); other bodies read as an empty form."""
    try:
        raw = await read_limited(request, MAX_FORM_BYTES)
    except BodyTooLarge:
        raise HTTPException(413, f"form larger than {MAX_FORM_BYTES} bytes") from None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return FormData()
    try:
        pairs: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        )
    except ValueError:  # more fields than any of our forms has
        raise HTTPException(400, f"form has more than {MAX_FORM_FIELDS} fields") from None
    return FormData(pairs)


PostedForm = Annotated[FormData, Depends(read_form)]


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


# ---- dependencies for staff routes ------------------------------------------------------------------------


def require_user(request: Request, settings: SettingsDep, db: DbDep) -> StaffUser:
    """The logged-in staff user; anonymous requests are sent to /login (see install())."""
    token = request.cookies.get(SESSION_COOKIE)
    user = auth.session_user(db, token, utcnow())
    if user is None or token is None:
        next_path = None
        if request.method in ("GET", "HEAD"):
            next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(next_path, clear_cookie=token is not None)
    request.state.user = user
    request.state.csrf_token = auth.csrf_token(_secret(settings), token)
    return user


CurrentUser = Annotated[StaffUser, Depends(require_user)]


def check_csrf_form(request: Request, form: PostedForm, settings: SettingsDep, user: CurrentUser) -> FormData:
    """The posted form, once its csrf field matches the session; CsrfFailed (403 page) otherwise."""
    if not auth.check_csrf(_secret(settings), request.cookies.get(SESSION_COOKIE), _field(form, CSRF_FIELD)):
        log.warning("CSRF check failed for staff user %s on %s %s", user.id, request.method, request.url.path)
        raise CsrfFailed()
    return form


CsrfChecked = Annotated[FormData, Depends(check_csrf_form)]


def ensure_same_clinic(user: StaffUser, clinic_id: str | None) -> None:
    """404 unless the row belongs to the user's clinic (a 403 would confirm the id exists elsewhere)."""
    if clinic_id is None or clinic_id != user.clinic_id:
        raise HTTPException(status_code=404, detail="not found")


def csrf_value(request: Request) -> str:
    """The CSRF token of the current session ("" without one); require_user computes it."""
    token = getattr(request.state, "csrf_token", None)
    if isinstance(token, str):
        return token
    session_token = request.cookies.get(SESSION_COOKIE)
    if not session_token:
        return ""
    return auth.csrf_token(_secret(request.app.state.settings), session_token)


def csrf_field(request: Request) -> Markup:
    """The hidden input every staff POST form carries."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(csrf_value(request)))


@pass_context
def csrf_input(context: Any) -> Markup:
    """Jinja global: ``{{ csrf_input() }}`` inside a staff page's form."""
    return csrf_field(context["request"])


templates.env.globals["csrf_input"] = csrf_input


# ---- pages ------------------------------------------------------------------------------------------------

_MESSAGE_PAGE = templates.env.from_string(
    """{% extends "_layout.html.j2" %}
{% block title %}{{ heading }}{% endblock %}
{% block content %}
<h1>{{ heading }}</h1>
<p>{{ text }}</p>
<p><a href="{{ link }}">{{ link_text }}</a></p>
{% endblock %}"""
)


def _message_page(request: Request, status: int, heading: str, text: str, link: str, link_text: str) -> HTMLResponse:
    html = _MESSAGE_PAGE.render(request=request, heading=heading, text=text, link=link, link_text=link_text)
    return HTMLResponse(html, status_code=status, headers=STAFF_HEADERS)


def _login_page(
    request: Request,
    settings: Settings,
    *,
    status: int = 200,
    next_path: str,
    email: str = "",
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    step: str = "password",
    headers: dict[str, str] | None = None,
) -> Response:
    pre_token = request.cookies.get(LOGIN_COOKIE) or ""
    fresh = not (20 <= len(pre_token) <= 100)
    if fresh:
        pre_token = secrets.token_urlsafe(32)
    page = {
        "csrf": auth.csrf_token(_secret(settings), pre_token, purpose="login"),
        "next": next_path,
        "email": email,
        "errors": errors or {},
        "notice": notice,
        "step": step,
    }
    response = templates.TemplateResponse(
        request, "login.html.j2", page, status_code=status, headers={**STAFF_HEADERS, **(headers or {})}
    )
    if fresh:
        response.set_cookie(LOGIN_COOKIE, pre_token, httponly=True, samesite="lax", secure=_secure(settings), path="/")
    return response


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, settings: SettingsDep, db: DbDep, next: str | None = None) -> Response:
    target = safe_next(next)
    if auth.session_user(db, request.cookies.get(SESSION_COOKIE), utcnow()) is not None:
        return _redirect(target)
    notice = "You are logged out." if "logged_out" in request.query_params else None
    return _login_page(request, settings, next_path=target, notice=notice)


def _account_gate(
    request: Request, settings: Settings, email: str, user: StaffUser | None, target: str, step: str
) -> Response | None:
    """The 429 page while this email's growing delay runs (loginguard.account_delay); None to go on."""
    verdict = loginguard.account_delay(request, settings, email, user)
    if verdict.allowed:
        return None
    seconds = verdict.retry_after
    errors = {
        "form": f"Too many attempts to log in to this account. Wait {seconds} seconds, then try again: "
        "nothing is locked, each further attempt just waits a little longer."
    }
    return _login_page(
        request,
        settings,
        status=429,
        next_path=target,
        email=email if step == "password" else "",
        errors=errors,
        step=step,
        headers={"Retry-After": str(seconds)},
    )


def _check_password(request: Request, settings: Settings, db: Session, email: str, password: str) -> StaffUser | None:
    """auth.authenticate, with at most login_hash_concurrency checks at once; TimeoutError when none is free."""
    slots = ratelimit.slots(request.app, "login-hash", settings.login_hash_concurrency)
    if not slots.take(settings.login_hash_wait_seconds):
        raise TimeoutError("no free password check")
    try:
        return auth.authenticate(db, email, password, utcnow())
    finally:
        slots.give_back()


@router.post("/login", response_class=HTMLResponse)
def login_submit(request: Request, form: PostedForm, settings: SettingsDep, db: DbDep) -> Response:
    target = safe_next(_field(form, "next"))
    verdict = ratelimit.login_client(request, settings)  # before anything is checked or hashed
    if not verdict.allowed:
        errors = {"form": f"Too many logins from this network. Wait {verdict.retry_after} seconds, then try again."}
        headers = {"Retry-After": str(verdict.retry_after)}
        return _login_page(request, settings, status=429, next_path=target, errors=errors, headers=headers)
    email = _field(form, "email").strip()[:MAX_EMAIL_LENGTH]
    password = _field(form, "password")
    if not auth.check_csrf(
        _secret(settings), request.cookies.get(LOGIN_COOKIE), _field(form, CSRF_FIELD), purpose="login"
    ):
        errors = {"form": "This login form has expired or was opened in another browser. Please log in again."}
        return _login_page(request, settings, status=403, next_path=target, email=email, errors=errors)
    if _field(form, "step") == "code":
        return _code_submit(request, form, settings, db, target)
    errors = {}
    if not email:
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."
    if errors:
        return _login_page(request, settings, status=422, next_path=target, email=email, errors=errors)
    found = auth.find_user(db, email) if len(email) <= MAX_EMAIL_LENGTH else None
    refused = _account_gate(request, settings, email, found, target, "password")
    if refused is not None:
        return refused
    try:
        user = _check_password(request, settings, db, email, password)
    except TimeoutError:
        errors = {"form": "The server is busy checking other logins. Nothing was checked: try again in a moment."}
        headers = {"Retry-After": str(BUSY_RETRY_SECONDS)}
        return _login_page(request, settings, status=503, next_path=target, email=email, errors=errors, headers=headers)
    if user is None:
        errors = {"form": f"The {auth.LOGIN_FAILED}. Check both and try again."}
        return _login_page(request, settings, status=401, next_path=target, email=email, errors=errors)
    if user.totp_secret:
        response = _login_page(request, settings, next_path=target, step="code")
        response.set_cookie(
            PENDING_COOKIE,
            loginguard.pending_cookie(settings, user),
            max_age=PENDING_SECONDS,
            httponly=True,
            samesite="lax",
            secure=_secure(settings),
            path="/login",
        )
        return response
    return _logged_in(request, settings, db, user, target)


def _code_submit(request: Request, form: FormData, settings: Settings, db: Session, target: str) -> Response:
    """The second step: the TOTP code of the user whose password was right in this browser."""
    user = loginguard.pending_user(request, settings, db)
    if user is None:
        errors = {"form": "This login took longer than 5 minutes or was started in another browser. Log in again."}
        return _login_page(request, settings, status=403, next_path=target, errors=errors)
    refused = _account_gate(request, settings, user.email, user, target, "code")
    if refused is not None:
        return refused
    if not totp.check_totp(db, user, _field(form, "code"), utcnow()):
        errors = {
            "code": "This code is wrong or was already used. Enter the 6-digit code your authenticator app shows now."
        }
        return _login_page(request, settings, status=401, next_path=target, errors=errors, step="code")
    return _logged_in(request, settings, db, user, target)


def _logged_in(request: Request, settings: Settings, db: Session, user: StaffUser, target: str) -> Response:
    """Start the session, clear the email's delay and remember this browser as a device of the account."""
    loginguard.account_succeeded(settings, user.email)
    _end_current_session(request, db)  # a fresh token on every login: no session fixation
    token = auth.start_session(db, user, utcnow())
    response = _redirect(target)
    _set_session_cookie(response, token, settings)
    secure = _secure(settings)
    response.delete_cookie(LOGIN_COOKIE, path="/", httponly=True, samesite="lax", secure=secure)
    response.delete_cookie(PENDING_COOKIE, path="/login", httponly=True, samesite="lax", secure=secure)
    assert user.id is not None
    response.set_cookie(
        DEVICE_COOKIE,
        loginguard.device_cookie(settings, user.id),
        max_age=DEVICE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/login",
    )
    return response


def _end_current_session(request: Request, db: Session) -> None:
    auth.end_session(db, request.cookies.get(SESSION_COOKIE), audit=False)


@router.post("/logout")
def logout(request: Request, form: PostedForm, settings: SettingsDep, db: DbDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and not auth.check_csrf(_secret(settings), token, _field(form, CSRF_FIELD)):
        raise CsrfFailed()
    if token:
        auth.end_session(db, token)
    response = _redirect("/login?logged_out=1")
    _delete_session_cookie(response, settings)
    return response


# ---- wiring -----------------------------------------------------------------------------------------------


class _StaffResponseHeaders:
    """Adds STAFF_HEADERS (unless the page set its own) to every response for a logged-in staff user."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["state"].get("user") is not None:
                headers = MutableHeaders(scope=message)
                for name, value in STAFF_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Login routes (unless already included), the login redirect and CSRF 403 handlers, the staff headers."""
    if not any(getattr(route, "path", None) == "/login" for route in app.routes):
        app.include_router(router)
    app.add_middleware(_StaffResponseHeaders)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        location = "/login" if exc.next_path is None else f"/login?next={quote(safe_next(exc.next_path), safe='/')}"
        response = _redirect(location)
        if exc.clear_cookie:
            _delete_session_cookie(response, request.app.state.settings)
        return response

    @app.exception_handler(CsrfFailed)
    async def _csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        return _message_page(
            request,
            403,
            "This form has expired",
            "Nothing was changed: the form did not carry a valid security token. This happens when you "
            "logged out or in again since the page was opened, or when the form came from another site. "
            "Go back, reload the page and try again.",
            "/login",
            "Log in",
        )
