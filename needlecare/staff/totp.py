"""The optional TOTP second factor of staff logins (RFC 6238 through ``pyotp``: 6 digits, 30-second steps).

``needlecare staff add --totp`` / ``staff totp`` store a fresh secret (:func:`new_totp_secret`,
:func:`enable_totp`) and print its provisioning URI once (:func:`totp_uri`) for an authenticator app. At login,
:func:`check_totp` accepts a code of the current step or one step either side (clock drift), each step once:
the last accepted step is stored, so a code seen over someone's shoulder cannot be used again. Enabling,
disabling and wrong codes are audited with IDs only.
"""

import hmac
from datetime import datetime

import pyotp
from sqlalchemy import delete, update
from sqlmodel import Session, col

from models import StaffUser, WebSession
from needlecare.staff.auth import audit_event

TOTP_ISSUER = "needlecare"
TOTP_WINDOW = 1  # the code of the previous and the next 30-second step are accepted too (clock drift)


def new_totp_secret() -> str:
    """A fresh random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def totp_uri(user: StaffUser, secret: str) -> str:
    """The otpauth:// provisioning URI an authenticator app reads (as text or a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def enable_totp(db: Session, user: StaffUser, secret: str, *, actor: str = "cli") -> None:
    """Require a TOTP code from the user at every login from now on (ends their sessions)."""
    user.totp_secret = secret
    user.totp_last_step = None
    db.add(user)
    db.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
    audit_event(db, actor, "staff.totp_enabled", user.id)
    db.commit()


def disable_totp(db: Session, user: StaffUser, *, actor: str = "cli") -> None:
    """Stop asking the user for a TOTP code."""
    user.totp_secret = None
    user.totp_last_step = None
    db.add(user)
    audit_event(db, actor, "staff.totp_disabled", user.id)
    db.commit()


def check_totp(db: Session, user: StaffUser, code: str, now: datetime) -> bool:
    """True once for a code of the user's secret in the current step (± TOTP_WINDOW); a code of a step at or
    before the last accepted one is refused, so an observed code cannot be replayed."""
    secret = user.totp_secret
    code = code.strip().replace(" ", "")
    if not secret or not (code.isascii() and code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // totp.interval
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            last = col(StaffUser.totp_last_step)
            result = db.exec(
                update(StaffUser)
                .where(col(StaffUser.id) == user.id, last.is_(None) | (last < step))
                .values(totp_last_step=step)
            )
            db.commit()
            return bool(result.rowcount)  # 0: this step (or a later one) was already used
    audit_event(db, "web", "staff.login_failed", user.id, reason="totp")
    db.commit()
    return False
