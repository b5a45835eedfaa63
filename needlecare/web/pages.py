"""Health check and the landing page."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import text

from needlecare.web.deps import DbDep, SettingsDep
from needlecare.web.templating import templates

router = APIRouter()


@router.get("/healthz")
def healthz(db: DbDep) -> dict[str, Any]:
    db.exec(text("SELECT 1"))  # type: ignore[call-overload]
    return {"status": "ok", "database": "ok"}


@router.get("/", response_class=HTMLResponse)
def index(request: Request, settings: SettingsDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html.j2", {"settings": settings})
