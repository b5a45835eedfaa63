"""/outbox, /outbox.json and /outbox/sms.json: what the local mail capture and the local SMS gateway received
(development only).

They list patients' addresses and live survey links without a login, so the app mounts them only in development
with ``WEB_HOST`` on loopback (``Settings.serves_outbox``), and each request must also have arrived on a loopback
socket from a loopback client (uvicorn may have been started on another interface than the settings say).
"""

import ipaddress
import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from needlecare.dev.mailcapture import list_mail, read_mail
from needlecare.dev.smsgateway import RecordedSms, list_sms, sms_dir
from needlecare.web.deps import SettingsDep
from needlecare.web.templating import templates


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return str(host) in ("testserver", "testclient")  # FastAPI's in-process TestClient


def loopback_only(request: Request) -> None:
    """404, as if the route were not there, unless the request is local at both ends."""
    server, client = request.scope.get("server"), request.scope.get("client")
    if not (server and client and _is_loopback(server[0]) and _is_loopback(client[0])):
        raise HTTPException(status_code=404, detail="Not Found")


router = APIRouter(tags=["development"], dependencies=[Depends(loopback_only)])


@router.get("/outbox.json")
def outbox_json(settings: SettingsDep, limit: int = 200) -> list[dict[str, Any]]:
    """Captured messages, newest first: to, subject, received_at, text and html parts."""
    return [m.as_dict() for m in list_mail(settings.resolved_mail_capture_dir, limit=min(max(limit, 1), 1000))]


@router.get("/outbox/sms.json")
def outbox_sms_json(settings: SettingsDep, limit: int = 200) -> list[dict[str, Any]]:
    """Text messages the local SMS gateway accepted, newest first: to, text, received_at."""
    return [m.as_dict() for m in list_sms(sms_dir(settings), limit=min(max(limit, 1), 1000))]


_SURVEY_LINK = re.compile(r"https?://\S+/s/[A-Za-z0-9_.\-]+")


def _with_link(sms: RecordedSms) -> dict[str, Any]:
    found = _SURVEY_LINK.search(sms.text)
    return {"sms": sms, "survey_url": found.group(0) if found else None}


@router.get("/outbox", response_class=HTMLResponse)
def outbox_page(request: Request, settings: SettingsDep) -> HTMLResponse:
    mails = list_mail(settings.resolved_mail_capture_dir, limit=100)
    texts = [_with_link(sms) for sms in list_sms(sms_dir(settings), limit=100)]
    return templates.TemplateResponse(request, "outbox.html.j2", {"mails": mails, "texts": texts})


@router.get("/outbox/{mail_id}", response_class=HTMLResponse)
def outbox_html(mail_id: str, settings: SettingsDep) -> HTMLResponse:
    """The HTML part of one message, sandboxed (no scripts, no outside requests)."""
    if not mail_id.replace("-", "").isalnum():
        raise HTTPException(status_code=404, detail="no such message")
    path = settings.resolved_mail_capture_dir / f"{mail_id}.eml"
    if not path.is_file():
        raise HTTPException(status_code=404, detail="no such message")
    return HTMLResponse(
        read_mail(path).html,
        headers={"Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'"},
    )
