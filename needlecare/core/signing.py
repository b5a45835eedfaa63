"""HMAC-SHA256 signatures for clinic webhooks, in the timestamped form large senders use.

``X-Needlecare-Signature: t=<unix time>,v1=<hex>`` where ``<hex>`` is HMAC-SHA256 of ``f"{t}.".encode() + body``
with the clinic's secret. The receiver refuses a ``t`` further than the tolerance from its own clock (a captured
body cannot be replayed later) and accepts any ``v1`` made with any of the clinic's active secrets (two while a
secret is being rotated; a sender may send one ``v1`` per secret). Every comparison is constant-time.

The older form, ``sha256=<hex of HMAC-SHA256(body)>``, has no timestamp; it is accepted only for clinics
registered before the timestamped form existed, and only when the caller allows it.
"""

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

SIGNATURE_HEADER = "X-Needlecare-Signature"
LEGACY_PREFIX = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300
MAX_HEADER_LENGTH = 1024
EXPECTED_FORM = "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' with the clinic's secret>"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UNIX_TIME = re.compile(r"^[0-9]{1,12}$")

Outcome = Literal["valid", "missing", "malformed", "stale", "mismatch", "legacy-refused"]


@dataclass(frozen=True)
class SignatureCheck:
    outcome: Outcome
    scheme: Literal["v1", "legacy", "none"] = "none"
    timestamp: int | None = None

    @property
    def valid(self) -> bool:
        return self.outcome == "valid"


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed with ``secret`` at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, f'{t}.'.encode() + body)}"


def sign_legacy(body: bytes, secret: str) -> str:
    """The deprecated, untimed header value: ``sha256=<hex>``."""
    return LEGACY_PREFIX + _mac(secret, body)


def _parse(header: str) -> tuple[int, list[str]] | None:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            if timestamp is not None or not _UNIX_TIME.match(value):
                return None
            timestamp = int(value)
        elif key == "v1":
            if not _HEX64.match(value):
                return None
            candidates.append(value)
    if timestamp is None or not candidates or len(candidates) > 4:
        return None
    return timestamp, candidates


def check(
    body: bytes,
    active_secrets: Sequence[str],
    header: str | None,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    allow_legacy: bool = False,
) -> SignatureCheck:
    """Check ``header`` against ``body`` and every secret in ``active_secrets``; says why when it fails."""
    header = (header or "").strip()
    if not header:
        return SignatureCheck("missing")
    if len(header) > MAX_HEADER_LENGTH or not active_secrets:
        return SignatureCheck("malformed")
    if header.startswith(LEGACY_PREFIX):
        if not allow_legacy:
            return SignatureCheck("legacy-refused", "legacy")
        given = header.removeprefix(LEGACY_PREFIX)
        if not _HEX64.match(given):
            return SignatureCheck("malformed", "legacy")
        matched = [hmac.compare_digest(_mac(s, body), given) for s in active_secrets]
        return SignatureCheck("valid" if any(matched) else "mismatch", "legacy")
    parsed = _parse(header)
    if parsed is None:
        return SignatureCheck("malformed")
    timestamp, candidates = parsed
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return SignatureCheck("stale", "v1", timestamp)
    message = f"{timestamp}.".encode() + body
    expected = [_mac(s, message) for s in active_secrets]
    matched = [hmac.compare_digest(e, c) for e in expected for c in candidates]
    return SignatureCheck("valid" if any(matched) else "mismatch", "v1", timestamp)


def verify(
    body: bytes,
    secret: str,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    allow_legacy: bool = False,
) -> bool:
    """True when ``header`` is a valid signature of ``body`` with ``secret``; constant-time."""
    return check(body, [secret], header, now=now, tolerance=tolerance, allow_legacy=allow_legacy).valid
