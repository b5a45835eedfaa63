"""POST /api/v1/sms/inbound: the SMS provider's webhook for text messages from patients.

Takes the two common shapes: form fields as Twilio posts them (``From``, ``To``, ``Body``, ``MessageSid``) and
JSON ``{"id", "from", "to", "body"}``. Protected by a shared token (``SMS_INBOUND_TOKEN``), sent as ``?token=`` or
the ``X-Needlecare-Token`` header and compared in constant time; with no token configured every post is refused
with 503 (development on loopback derives one from SECRET_KEY, which the local gateway uses). The message is
handled at once in one transaction (``needlecare.surveys.sms_inbound``) and the provider gets 200; a repost of a
message id already stored is answered 200 and changes nothing. A refusal is a 4xx naming the field; nothing of the
message is logged or echoed.
"""

import hmac
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from models.base import utcnow
from needlecare.core.db import get_engine
from needlecare.core.jsonin import JsonInputError, load_json
from needlecare.core.settings import Settings
from needlecare.surveys import sms_inbound
from needlecare.web.bodies import BodyTooLarge, read_limited
from needlecare.web.deps import SettingsDep

router = APIRouter(prefix="/api/v1/sms", tags=["sms"])
MAX_BODY_BYTES = 16 * 1024
TOKEN_HEADER = "X-Needlecare-Token"
FORM = "application/x-www-form-urlencoded"
# Field names per shape: ours (JSON) and Twilio's (form); the first one present is used.
FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "MessageSid", "SmsSid", "message_id"),
    "from": ("from", "From", "msisdn"),
    "to": ("to", "To"),
    "body": ("body", "Body", "text"),
}
NOT_CONFIGURED = (
    "inbound text messages are not configured: set NEEDLECARE_SMS_INBOUND_TOKEN and give the provider's webhook "
    f"the same token (?token= or the {TOKEN_HEADER} header)"
)
_STRING = {"type": "string", "maxLength": 1600}
_EXAMPLE = {"id": "SM0123456789abcdef", "from": "+447700900123", "to": "+447700900000", "body": "7 0"}


@router.post(
    "/inbound",
    openapi_extra={
        "parameters": [
            {"name": TOKEN_HEADER, "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256}},
            {"name": "token", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 256}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"id": _STRING, "from": _STRING, "to": _STRING, "body": _STRING},
                        "required": ["id", "from", "body"],
                    },
                    "example": _EXAMPLE,
                },
                FORM: {
                    "schema": {
                        "type": "object",
                        "properties": {"MessageSid": _STRING, "From": _STRING, "To": _STRING, "Body": _STRING},
                        "required": ["MessageSid", "From", "Body"],
                        "additionalProperties": {"type": "string"},
                    }
                },
            },
        },
    },
    responses={
        200: {"description": "Received (or a repost of a message already received): `{status, inbound_id}`"},
        401: {"description": "No token (?token= or X-Needlecare-Token)"},
        403: {"description": "Wrong token"},
        413: {"description": "Body larger than 16 KiB"},
        415: {"description": "Neither JSON nor form fields"},
        422: {"description": "A missing or malformed field, named in `detail`"},
        503: {"description": "No inbound token is configured (NEEDLECARE_SMS_INBOUND_TOKEN)"},
    },
)
async def inbound(request: Request, settings: SettingsDep) -> JSONResponse:
    """A text message from a patient, as the SMS provider's webhook posts it."""
    expected = settings.resolved_sms_inbound_token
    if expected is None:
        return JSONResponse(status_code=503, content={"detail": NOT_CONFIGURED})
    given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token")
    if not given:
        return JSONResponse(status_code=401, content={"detail": f"send the inbound token as ?token= or {TOKEN_HEADER}"})
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        return JSONResponse(status_code=403, content={"detail": "wrong inbound token"})
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return JSONResponse(status_code=413, content={"detail": str(exc)})
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields = _fields(raw, content_type)
    if isinstance(fields, JSONResponse):
        return fields
    status, content = await run_in_threadpool(_handle, fields, settings)
    return JSONResponse(status_code=status, content=content)


def _fields(raw: bytes, content_type: str) -> dict[str, Any] | JSONResponse:
    if content_type == FORM:
        form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=100)
        data: Any = {key: values[0] for key, values in form.items() if values}
    elif content_type in ("application/json", ""):
        try:
            data = load_json(raw)
        except JsonInputError:
            return JSONResponse(status_code=422, content={"detail": "body: not valid JSON"})
        if not isinstance(data, dict):
            return JSONResponse(
                status_code=422, content={"detail": 'body: must be a JSON object {"id", "from", "body"}'}
            )
    else:
        detail = f"send application/json or {FORM} (the provider's webhook format)"
        return JSONResponse(status_code=415, content={"detail": detail})
    return {name: next((data[key] for key in keys if key in data), None) for name, keys in FIELDS.items()}


def _handle(fields: dict[str, Any], settings: Settings) -> tuple[int, dict[str, Any]]:
    region = settings.sms_default_region
    try:
        text = sms_inbound.checked(fields["id"], fields["from"], fields["to"], fields["body"], region)
    except sms_inbound.InboundRefused as exc:
        return 422, {"detail": str(exc)}
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as db:
        handled = sms_inbound.handle(db, text, settings=settings, now=utcnow())
    status = "duplicate" if handled.duplicate else "received"
    return 200, {"status": status, "inbound_id": handled.inbound_id, "action": handled.action.value}
