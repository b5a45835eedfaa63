"""Unsubscribe tokens: one per patient, signed, no expiry; they reveal nothing but a row id."""

import hashlib
import hmac


class BadUnsubscribeToken(ValueError):
    pass


def make_unsubscribe_token(patient_id: int, secret: str) -> str:
    return f"{patient_id}.{_sig(patient_id, secret)}"


def read_unsubscribe_token(token: str, secret: str) -> int:
    raw_id, _, sig = token.partition(".")
    if not raw_id.isdigit() or not hmac.compare_digest(sig, _sig(int(raw_id), secret)):
        raise BadUnsubscribeToken("this unsubscribe link is not valid")
    return int(raw_id)


def _sig(patient_id: int, secret: str) -> str:
    return hmac.new(secret.encode(), f"unsubscribe:{patient_id}".encode(), hashlib.sha256).hexdigest()[:32]
