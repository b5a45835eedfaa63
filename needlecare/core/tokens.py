"""Signed survey links: ``<payload>.<signature>``, both base64url without padding.

The payload is compact JSON with IDs and an expiry only (contact, patient, step, unix time), never a
name or contact detail. The signature is HMAC-SHA256 with a key derived from the application secret for
this one purpose, so a survey token can never pass as any other signed value. The IDs in the token are
checked against the contact row on use (``needlecare.surveys.responses.load_contact``): a token only ever opens
the contact it was made for.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PURPOSE = b"needlecare.survey-link.v1"
_STEP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_TOKEN_LENGTH = 512


class TokenError(ValueError):
    """A survey token that cannot be used."""


class TokenInvalid(TokenError):
    """Malformed, tampered with, or signed with another key."""


class TokenExpired(TokenError):
    """Genuine, but past its expiry."""


@dataclass(frozen=True)
class TokenClaims:
    contact_id: int
    patient_id: int
    step_id: str
    expires_at: datetime


def make_token(contact_id: int, patient_id: int, step_id: str, expires_at: datetime, secret: str) -> str:
    """A URL-safe token for one contact, valid until ``expires_at`` (an aware datetime)."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    if not _STEP_ID.match(step_id):
        raise ValueError("step_id must be 1-40 characters of letters, digits, '_', '.' or '-'")
    claims = {"c": contact_id, "p": patient_id, "s": step_id, "e": int(expires_at.timestamp())}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_b64encode(_mac(payload, secret))}"


def read_token(token: str, secret: str, now: datetime) -> TokenClaims:
    """The claims of a genuine, unexpired token; raises ``TokenInvalid`` or ``TokenExpired``.

    The signature is checked (in constant time) before anything in the payload is trusted.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise TokenInvalid("malformed token")
    payload, signature = token.split(".")
    if not _B64URL.match(payload):
        raise TokenInvalid("malformed payload")
    try:
        given = _b64decode(signature)
    except ValueError:
        raise TokenInvalid("malformed signature") from None
    if not hmac.compare_digest(_mac(payload, secret), given):
        raise TokenInvalid("bad signature")
    try:
        raw = json.loads(_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        raise TokenInvalid("malformed payload") from None
    claims = _claims(raw)
    if now >= claims.expires_at:
        raise TokenExpired("token expired")
    return claims


def _claims(raw: object) -> TokenClaims:
    if not isinstance(raw, dict) or set(raw) != {"c", "p", "s", "e"}:
        raise TokenInvalid("unexpected payload")
    contact_id, patient_id, step_id, expiry = raw["c"], raw["p"], raw["s"], raw["e"]
    for number in (contact_id, patient_id, expiry):
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise TokenInvalid("unexpected payload")
    if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
        raise TokenInvalid("unexpected payload")
    try:
        expires_at = datetime.fromtimestamp(expiry, UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenInvalid("unexpected payload") from None
    return TokenClaims(contact_id=contact_id, patient_id=patient_id, step_id=step_id, expires_at=expires_at)


def _mac(payload: str, secret: str) -> bytes:
    key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict: only the base64url alphabet, no padding, and only the one canonical spelling."""
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if _b64encode(data) != text:
        raise ValueError("not canonical base64url")
    return data
