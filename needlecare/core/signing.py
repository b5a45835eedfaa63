"""HMAC-SHA256 signatures for clinic webhooks: `X-Needlecare-Signature: sha256=<hex>`."""

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Needlecare-Signature"
_PREFIX = "sha256="


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(body: bytes, secret: str) -> str:
    """The header value for ``body`` signed with ``secret``."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """True when ``header`` is a valid signature of ``body``; constant-time."""
    if not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())
