"""POST /api/v1/events/session-completed: signed, validated, stored once, then one event."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from models import SessionPublic
from needlecare.core.db import get_engine
from needlecare.core.settings import Settings
from needlecare.core.signing import SIGNATURE_HEADER, verify
from needlecare.intake import ingest
from needlecare.intake.clinics import webhook_secret
from needlecare.web.bodies import BodyTooLarge, read_limited
from needlecare.web.deps import SettingsDep

router = APIRouter(prefix="/api/v1/events", tags=["ingress"])
MAX_BODY_BYTES = 64 * 1024


@router.post(
    "/session-completed",
    status_code=202,
    responses={
        200: {"description": "Already received: nothing is stored or sent twice"},
        401: {"description": "Missing or wrong X-Needlecare-Signature"},
        413: {"description": "Body larger than 64 KiB"},
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
            if not verify(raw, webhook_secret(clinic, settings), signature):
                return 401, {
                    "detail": f"missing or invalid {SIGNATURE_HEADER}: expected "
                    "sha256=<hex HMAC-SHA256 of the raw body with the clinic's secret>"
                }
            body = ingest.validate(data)
        except ingest.InvalidSession as exc:
            return 422, {"detail": [p.as_dict() for p in exc.problems]}
        result = ingest.record_and_emit(db, body, actor=f"api:{clinic.id}")
    answer = SessionPublic(session_id=result.session_id, status="accepted" if result.created else "duplicate")
    return (202 if result.created else 200), answer.model_dump()
