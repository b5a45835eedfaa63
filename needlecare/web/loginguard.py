"""What the login keeps between requests without a session: device cookies, the TOTP step, the email delay.

- ``nc_device`` (Path=/login, 180 days): ``<user id>.<nonce>.<HMAC>``, set at every successful login. A browser
  carrying one for the account it logs in to skips that email's growing delay, so strangers guessing at an email
  never keep its owner out (they do not have the cookie; it only comes from a login with the right password).
- ``nc_2fa`` (Path=/login, 5 minutes): ``<user id>.<expiry>.<HMAC over both and the password hash>``, set after
  the right password of a user with TOTP on; the code step reads the user from it. A password change voids it.
- :func:`account_delay` / :func:`account_succeeded`: the per-email growing delay of
  :func:`needlecare.web.ratelimit.attempt`, keyed by an HMAC of the normalized email (unknown emails alike, so
  the delay tells nobody which accounts exist).
"""

import base64
import hashlib
import hmac
import secrets
import time

from fastapi import Request
from sqlmodel import Session

from models import StaffUser
from needlecare.core.db import get_engine
from needlecare.core.settings import Settings
from needlecare.staff import auth
from needlecare.web import ratelimit

DEVICE_COOKIE = "nc_device"
PENDING_COOKIE = "nc_2fa"
DEVICE_MAX_AGE = 180 * 24 * 3600
PENDING_SECONDS = 300


def _sign(settings: Settings, *parts: str) -> str:
    secret = settings.secret_key.get_secret_value().encode("utf-8")
    digest = hmac.new(secret, "\x00".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", errors="replace"))


def device_cookie(settings: Settings, user_id: int) -> str:
    """A fresh device cookie value for this account."""
    nonce = secrets.token_urlsafe(12)
    return f"{user_id}.{nonce}.{_sign(settings, 'needlecare-device', str(user_id), nonce)}"


def trusted_device(request: Request, settings: Settings, user: StaffUser | None) -> bool:
    """True when the browser carries a device cookie from an earlier login to this very account."""
    value = request.cookies.get(DEVICE_COOKIE, "")
    parts = value.split(".")
    if user is None or len(parts) != 3 or len(value) > 200 or parts[0] != str(user.id):
        return False
    return _same(_sign(settings, "needlecare-device", parts[0], parts[1]), parts[2])


def pending_cookie(settings: Settings, user: StaffUser) -> str:
    """The cookie value naming a user whose password was right, for the TOTP step."""
    expires = str(int(time.time()) + PENDING_SECONDS)
    return f"{user.id}.{expires}.{_sign(settings, 'needlecare-2fa', str(user.id), expires, user.password_hash)}"


def pending_user(request: Request, settings: Settings, db: Session) -> StaffUser | None:
    """The user whose password was right in this browser less than PENDING_SECONDS ago (and has TOTP on)."""
    parts = request.cookies.get(PENDING_COOKIE, "").split(".")
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()) or len(parts[0]) > 18:
        return None
    if int(parts[1]) < time.time():
        return None
    user = db.get(StaffUser, int(parts[0]))
    if user is None or user.disabled_at is not None or not user.totp_secret:
        return None
    return user if _same(_sign(settings, "needlecare-2fa", parts[0], parts[1], user.password_hash), parts[2]) else None


def _account_key(settings: Settings, email: str) -> str:
    return ratelimit.key_for(settings, "login-account", auth.normalize_email(email))


def account_delay(request: Request, settings: Settings, email: str, user: StaffUser | None) -> ratelimit.Verdict:
    """Count a login attempt for this email; refused while its growing delay runs (never for a known device)."""
    if not settings.rate_limits or trusted_device(request, settings, user):
        return ratelimit.Verdict(True)
    return ratelimit.attempt(
        get_engine(settings.resolved_database_url),
        _account_key(settings, email),
        free=settings.login_free_failures,
        first=settings.login_delay_seconds,
        longest=settings.login_delay_max_seconds,
    )


def account_succeeded(settings: Settings, email: str) -> None:
    """Clear the email's growing delay after a full login."""
    if settings.rate_limits:
        ratelimit.succeeded(get_engine(settings.resolved_database_url), _account_key(settings, email))
