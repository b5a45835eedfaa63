"""Staff logins: scrypt password hashes, common-password checks, server-side sessions and CSRF tokens.

* Passwords are stored as ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` (stdlib ``hashlib.scrypt``, 16-byte
  random salt) and compared with ``hmac.compare_digest``.
* ``authenticate`` answers the same way for an unknown email, a wrong password or a disabled account,
  and spends the same hashing time on each, so a login form cannot be used to find out who has an account.
  There is no lockout a stranger could trigger: the web layer slows repeated attempts down instead
  (``needlecare.web.ratelimit``). Wrong passwords are counted in ``failed_logins`` for the operator.
* New passwords are refused when short or common (``needlecare/data/common_passwords.toml``).
* The optional TOTP second factor is in :mod:`needlecare.staff.totp`.
* A browser session is a random token (``secrets.token_urlsafe(32)``); only its SHA-256 is stored
  (``WebSession.token_hash``). Sessions slide: each use extends them to ``idle`` from now, never past
  ``max_age`` after the login.
* CSRF tokens are an HMAC of the session token under the secret key: nothing to store, and a token is only
  valid with the session it was made for.
* Login, failed login and logout are written to the audit log with IDs only (never the email or
  the password).
"""

import base64
import hashlib
import hmac
import logging
import re
import secrets
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Literal

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import AuditEvent, Clinic, Practitioner, StaffUser, WebSession
from models.checks import check_email

log = logging.getLogger("needlecare.staff.auth")

# ---- settings (module constants until they move to needlecare.core.settings) --------------------------------

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # scrypt is cheap to feed, but a megabyte "password" is not one
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
SESSION_IDLE = timedelta(hours=12)
SESSION_MAX_AGE = timedelta(days=7)
LAST_SEEN_RESOLUTION = timedelta(minutes=1)  # a session row is written at most once a minute per session

LOGIN_FAILED = "email or password is wrong"

FailureReason = Literal["unknown", "password", "disabled"]


# ---- errors ---------------------------------------------------------------------------------------------


class AuthError(ValueError):
    """Input the operator can fix; the message says how."""


class WeakPassword(AuthError):
    pass


class UnknownClinic(AuthError):
    pass


class UnknownPractitioner(AuthError):
    pass


class EmailTaken(AuthError):
    pass


class InvalidEmail(AuthError):
    pass


class UnknownUser(AuthError):
    pass


class CommonPasswords(ValueError):
    """The built-in list of common passwords is malformed (a packaging error, not user input)."""


# ---- password hashing -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # maxmem: 128 * n * r * p bytes are needed; OpenSSL's default ceiling (32 MiB) is close to that.
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * n * r * p + 2**20
    )


@dataclass(frozen=True)
class _Refused:
    passwords: frozenset[str]
    bases: frozenset[str]


_DECORATION = re.compile(r"[\d\s\W_]+")


@lru_cache(maxsize=1)
def _refused() -> _Refused:
    """The common passwords and password bases of needlecare/data/common_passwords.toml, validated."""
    text = resources.files("needlecare").joinpath("data/common_passwords.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    lists: dict[str, frozenset[str]] = {}
    for name in ("passwords", "bases"):
        values = data.get(name)
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise CommonPasswords(f"common_passwords.toml: '{name}' must be a non-empty list of non-empty strings")
        lists[name] = frozenset(v.strip().lower() for v in values)
    return _Refused(passwords=lists["passwords"], bases=lists["bases"])


def is_common_password(password: str) -> bool:
    """True for a password of the built-in list, a listed base with only digits or punctuation added, or one
    character repeated."""
    lowered = password.strip().lower()
    refused = _refused()
    if lowered in refused.passwords or len(set(lowered)) <= 2:
        return True
    core = _DECORATION.sub("", lowered)
    return not core or core in refused.bases or any(core == base * (len(core) // len(base)) for base in refused.bases)


def check_password_strength(password: str) -> None:
    """Raise WeakPassword with a message for the person choosing the password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            f"password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
            "(a few unrelated words make a long password that is easy to remember)"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password is too long: use at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("password cannot be only spaces")
    if is_common_password(password):
        raise WeakPassword(
            "password is one of the most commonly used ones (or one with only digits or symbols added), "
            "which attackers try first: choose another, e.g. a few unrelated words"
        )


def hash_password(password: str) -> str:
    """A salted scrypt hash in a self-describing format: scrypt$n$r$p$<salt b64>$<hash b64>."""
    check_password_strength(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when the password matches the stored hash; False for a mismatch or a malformed hash."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64, validate=True), base64.b64decode(hash_b64, validate=True)
        cost = int(n), int(r), int(p)
    except ValueError:  # wrong number of fields, bad base64, non-numeric parameters
        return False
    if len(password) > MAX_PASSWORD_LENGTH or not expected:
        return False
    try:
        actual = _scrypt(password, salt, *cost, len(expected))
    except (ValueError, MemoryError):  # parameters scrypt refuses
        return False
    return hmac.compare_digest(actual, expected)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when there is no user, so that costs the same time as a real check."""
    return hash_password(secrets.token_urlsafe(24))


# ---- users ----------------------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return email.strip().lower()


def audit_event(db: Session, actor: str, action: str, user_id: int | None, **detail: object) -> None:
    """Add an audit row about a staff user (IDs only; the caller commits)."""
    db.add(
        AuditEvent(
            actor=actor,
            action=action,
            entity="staff_user",
            entity_id=str(user_id) if user_id is not None else "unknown",
            detail=dict(detail),
        )
    )


def find_user(db: Session, email: str) -> StaffUser | None:
    return db.exec(select(StaffUser).where(StaffUser.email == normalize_email(email))).first()


def check_new_user(
    db: Session, clinic_id: str, email: str, name: str, practitioner_id: int | None = None
) -> tuple[str, str]:
    """The normalized (email, name) of a user that can be added; an AuthError saying what to fix otherwise."""
    email = normalize_email(email)
    name = name.strip()
    try:
        check_email(email)
    except ValueError as exc:
        raise InvalidEmail(f"email {exc}") from None
    if len(email) > 320:
        raise InvalidEmail("email is longer than 320 characters")
    if not name or len(name) > 200:
        raise AuthError("name must be 1 to 200 characters")
    if db.get(Clinic, clinic_id) is None:
        raise UnknownClinic(f"unknown clinic '{clinic_id}'; see `needlecare clinic list`")
    if practitioner_id is not None:
        practitioner = db.get(Practitioner, practitioner_id)
        if practitioner is None or practitioner.clinic_id != clinic_id:
            raise UnknownPractitioner(f"practitioner {practitioner_id} is not one of clinic '{clinic_id}'")
    if find_user(db, email) is not None:
        raise EmailTaken("a staff user with this email already exists")
    return email, name


def create_user(
    db: Session,
    clinic_id: str,
    email: str,
    name: str,
    password: str,
    practitioner_id: int | None = None,
    *,
    actor: str = "cli",
) -> StaffUser:
    """Add a staff user to a clinic; raises an AuthError subclass whose message says what to fix."""
    email, name = check_new_user(db, clinic_id, email, name, practitioner_id)
    user = StaffUser(
        clinic_id=clinic_id,
        email=email,
        name=name,
        password_hash=hash_password(password),
        practitioner_id=practitioner_id,
    )
    db.add(user)
    try:
        db.flush()
        audit_event(db, actor, "staff.added", user.id, clinic_id=clinic_id)
        db.commit()
    except IntegrityError:
        db.rollback()
        raise EmailTaken("a staff user with this email already exists") from None
    return user


def set_password(db: Session, user: StaffUser, password: str, *, actor: str = "cli") -> None:
    """Replace the password, clear the failure count and end every session of the user."""
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    db.add(user)
    db.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
    audit_event(db, actor, "staff.password_changed", user.id)
    db.commit()


def disable_user(db: Session, user: StaffUser, now: datetime, *, actor: str = "cli") -> None:
    """Refuse further logins and end every session of the user (the row stays: audit and cases refer to it)."""
    if user.disabled_at is None:
        user.disabled_at = now
        db.add(user)
    db.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
    audit_event(db, actor, "staff.disabled", user.id)
    db.commit()


# ---- login ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginAttempt:
    """What happened, for the audit log and tests; callers show LOGIN_FAILED for every failure."""

    user: StaffUser | None
    reason: FailureReason | None = None


def attempt_login(db: Session, email: str, password: str, now: datetime) -> LoginAttempt:
    """Check a login; always spends one scrypt verification, whatever the outcome."""
    user = find_user(db, email) if len(email) <= 320 else None
    if user is None:
        verify_password(password, _dummy_hash())
        audit_event(db, "web", "staff.login_failed", None, reason="unknown")
        db.commit()
        return LoginAttempt(None, "unknown")
    matches = verify_password(password, user.password_hash)
    user_id = user.id
    if user.disabled_at is not None:
        reason: FailureReason = "disabled"
    elif not matches:
        reason = "password"
    else:
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        db.add(user)
        audit_event(db, str(user_id), "staff.login", user_id)
        db.commit()
        return LoginAttempt(user)
    if reason == "password":
        # One atomic increment: concurrent guesses cannot overwrite each other's count.
        db.exec(
            update(StaffUser).where(col(StaffUser.id) == user_id).values(failed_logins=col(StaffUser.failed_logins) + 1)
        )
        db.refresh(user)
    audit_event(db, "web", "staff.login_failed", user_id, reason=reason)
    db.commit()
    return LoginAttempt(None, reason)


def authenticate(db: Session, email: str, password: str, now: datetime) -> StaffUser | None:
    """The user when email and password match an enabled account; None otherwise (say LOGIN_FAILED)."""
    return attempt_login(db, email, password, now).user


# ---- sessions -------------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(
    db: Session,
    user: StaffUser,
    now: datetime,
    *,
    idle: timedelta = SESSION_IDLE,
    max_age: timedelta = SESSION_MAX_AGE,
) -> str:
    """A new session for the user; returns the cookie value (only its SHA-256 is stored)."""
    token = secrets.token_urlsafe(32)
    assert user.id is not None
    db.exec(delete(WebSession).where(col(WebSession.user_id) == user.id, col(WebSession.expires_at) <= now))
    db.add(
        WebSession(
            token_hash=token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + min(idle, max_age),
        )
    )
    db.commit()
    return token


def session_user(
    db: Session,
    token: str | None,
    now: datetime,
    *,
    idle: timedelta = SESSION_IDLE,
    max_age: timedelta = SESSION_MAX_AGE,
) -> StaffUser | None:
    """The user of a live session, extending it; None for an unknown, expired or disabled one."""
    if not token or len(token) > 200:
        return None
    session = db.exec(select(WebSession).where(WebSession.token_hash == token_hash(token))).first()
    if session is None:
        return None
    hard_limit = session.created_at + max_age
    if session.expires_at <= now or hard_limit <= now:
        _delete_session(db, session)
        db.commit()
        return None
    user = db.get(StaffUser, session.user_id)
    if user is None or user.disabled_at is not None:
        return None
    if now - session.last_seen_at >= LAST_SEEN_RESOLUTION:
        # A statement, not the ORM object: a logout in a parallel request may have deleted the row meanwhile.
        db.exec(
            update(WebSession)
            .where(col(WebSession.id) == session.id)
            .values(last_seen_at=now, expires_at=min(now + idle, hard_limit))
        )
        db.commit()
    return user


def end_session(db: Session, token: str | None, *, audit: bool = True) -> bool:
    """Delete the session of this token; True if there was one."""
    if not token or len(token) > 200:
        return False
    session = db.exec(select(WebSession).where(WebSession.token_hash == token_hash(token))).first()
    if session is None:
        return False
    if audit:
        audit_event(db, str(session.user_id), "staff.logout", session.user_id)
    _delete_session(db, session)
    db.commit()
    return True


def _delete_session(db: Session, session: WebSession) -> None:
    """Delete by statement: two requests ending the same session must not fail on the second one."""
    db.exec(delete(WebSession).where(col(WebSession.id) == session.id))


# ---- CSRF -----------------------------------------------------------------------------------------------


def csrf_token(secret_key: str, session_token: str, *, purpose: str = "session") -> str:
    """The form token bound to one session (or, with purpose="login", to a pre-login cookie)."""
    message = f"needlecare-csrf\x00{purpose}\x00{session_token}".encode()
    digest = hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def check_csrf(secret_key: str, session_token: str | None, submitted: str | None, *, purpose: str = "session") -> bool:
    """True when the submitted form token was made for this session token."""
    if not session_token or not submitted:
        return False
    expected = csrf_token(secret_key, session_token, purpose=purpose)
    return hmac.compare_digest(expected.encode("ascii"), submitted.encode("utf-8", errors="replace"))
