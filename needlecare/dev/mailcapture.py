"""A local SMTP sink (aiosmtpd) for development and tests, and a reader for what it caught.

Each message is one .eml file in a directory; the web app's /outbox reads that directory.
"""

import email
import email.policy
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class CapturedMail:
    id: str
    received_at: datetime
    mail_from: str
    to: list[str]
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    attachments: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "from": self.mail_from,
            "to": self.to,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "headers": self.headers,
            "attachments": self.attachments,
        }


class _Handler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{stamp}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.directory / f"{stamp}.eml")  # atomic: readers never see half a message
        return "250 Message accepted for delivery"


def start_capture(directory: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    """Start the sink in a background thread; call ``.stop()`` on the result to end it."""
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(_Handler(directory), hostname=host, port=port)
    controller.start()
    return controller


def read_mail(path: Path) -> CapturedMail:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = html = ""
    attachments: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename:
            attachments.append(filename)
        elif part.get_content_type() == "text/plain" and not text:
            text = str(part.get_content())
        elif part.get_content_type() == "text/html" and not html:
            html = str(part.get_content())
    stamp = int(path.stem.split("-")[0])
    return CapturedMail(
        id=path.stem,
        received_at=datetime.fromtimestamp(stamp / 1e9, UTC),
        mail_from=str(msg.get("From", "")),
        to=[a.strip() for a in str(msg.get("To", "")).split(",") if a.strip()],
        subject=str(msg.get("Subject", "")),
        text=text,
        html=html,
        headers={k: str(v) for k, v in msg.items()},
        attachments=attachments,
    )


def list_mail(directory: Path, limit: int = 200) -> list[CapturedMail]:
    """Newest first."""
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("*.eml"), reverse=True)[:limit]
    return [read_mail(p) for p in files]
