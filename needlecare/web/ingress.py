"""POST /api/v1/events/session-completed: signed, validated, stored once, then one event."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from models import SessionCompleted, SessionPublic
from models.base import utcnow
from needlecare.core.db import get_engine
from needlecare.core.settings import Settings
from needlecare.core.signing import EXPECTED_FORM, SIGNATURE_HEADER, SignatureCheck, check
from needlecare.intake import ingest
from needlecare.intake.clinics import active_webhook_secrets, note_legacy_signature
from needlecare.intake.sample import sample_event
from needlecare.web.bodies import BodyTooLarge, read_limited
from needlecare.web.deps import SettingsDep
from needlecare.web.openapi import json_body
from needlecare.web.ratelimit import TOO_MANY, rate_limited

router = APIRouter(prefix="/api/v1/events", tags=["ingress"])
MAX_BODY_BYTES = 64 * 1024
_SIGNATURE_PARAMETER = {
    "name": SIGNATURE_HEADER,
    "in": "header",
    "required": True,
    "schema": {"type": "string", "maxLength": 1024},
    "description": f"{EXPECTED_FORM}; the older untimed sha256=<hex of the body's HMAC> is deprecated",
}


@router.post(
    "/session-completed",
    status_code=202,
    dependencies=[rate_limited("webhook")],
    openapi_extra={**json_body(SessionCompleted, example=sample_event()), "parameters": [_SIGNATURE_PARAMETER]},
    responses={
        200: {"description": "Already received: nothing is stored or sent twice"},
        401: {"description": "Missing or wrong X-Needlecare-Signature"},
        413: {"description": "Body larger than 64 KiB"},
        429: TOO_MANY,
        422: {"description": "Unknown clinic or injury, malformed or out-of-range field"},
    },
)
async def session_completed(request: Request, settings: SettingsDep) -> JSONResponse:
    """Record a completed needling session. Body: the session-completed contract (see README)."""
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return JSONResponse(status_code=413, content={"detail": str(exc)})
    signature = request.headers.get(SIGNATURE_HEADER)
    status, content = await run_in_threadpool(_handle, raw, signature, settings)
    return JSONResponse(status_code=status, content=content)


def _handle(raw: bytes, signature: str | None, settings: Settings) -> tuple[int, dict[str, Any]]:
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as db:
        try:
            data = ingest.parse_json(raw)
            clinic = ingest.find_clinic(db, data)
            verdict = check(
                raw,
                active_webhook_secrets(clinic, settings, utcnow()),
                signature,
                tolerance=settings.webhook_tolerance_seconds,
                allow_legacy=clinic.webhook_legacy_signatures,
            )
            if not verdict.valid:
                return 401, {"detail": _refusal(verdict, settings)}
            if verdict.scheme == "legacy":
                note_legacy_signature(clinic.id)
            body = ingest.validate(data, region=clinic.region)
        except ingest.InvalidSession as exc:
            return 422, {"detail": [p.as_dict() for p in exc.problems]}
        result = ingest.record_and_emit(db, body, actor=f"api:{clinic.id}")
    answer = SessionPublic(session_id=result.session_id, status="accepted" if result.created else "duplicate")
    return (202 if result.created else 200), answer.model_dump()


def _refusal(verdict: SignatureCheck, settings: Settings) -> str:
    if verdict.outcome == "stale":
        return (
            f"{SIGNATURE_HEADER} timestamp t= is more than {settings.webhook_tolerance_seconds} s from the "
            "server's clock: sign each request when it is sent (a replayed request is refused)"
        )
    if verdict.outcome == "legacy-refused":
        return f"this clinic accepts only the timestamped {SIGNATURE_HEADER}: {EXPECTED_FORM}"
    return f"missing or invalid {SIGNATURE_HEADER}: expected {EXPECTED_FORM}"
