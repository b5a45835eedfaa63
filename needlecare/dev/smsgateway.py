"""A local SMS gateway for development and tests: what a provider would send, and replies as its webhook posts them.

Outbound: any POST except to ``/inbound`` is a text message handed to the provider, as Apprise's ``json://`` and
``form://`` plugins post it (JSON or form fields ``message``, ``title``, ``type``, plus payload extras such as
``to``). Each accepted message is one JSON file in a directory, named by a nanosecond timestamp and written
atomically (the same convention as the mail capture's .eml files); the web app's /outbox lists them. The
recipient is read from the payload (``to``, ``phone``, ``number``, ``recipient``, ``target``), else the query
string, else the last path segment when it looks like a phone number.

Faults, for tests: ``status`` answers every message with that HTTP status (nothing is recorded unless it is 2xx);
``hang_seconds`` holds each message that long and then drops the connection without an answer (nothing is
recorded). Both can be set on the object, by ``--status`` / ``--hang`` on the command line, or by POST
``/_control`` with ``{"status": 503, "hang_seconds": 0}``.

Inbound: :func:`post_inbound` posts a reply to needlecare's ``/api/v1/sms/inbound`` as a provider's webhook would
(JSON ``{"id", "from", "to", "body"}`` or Twilio-style form fields), with the inbound token. POST ``/inbound`` on
the gateway with ``{"from": ..., "body": ...}`` does the same and answers with needlecare's status and body.
``python -m needlecare.dev.smsgateway reply +447700900123 "7 0"`` does it from a shell.
"""

import argparse
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

if TYPE_CHECKING:
    from needlecare.core.settings import Settings

MAX_BODY_BYTES = 64 * 1024
RECIPIENT_KEYS = ("to", "phone", "number", "recipient", "target")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
INBOUND_PATH = "/api/v1/sms/inbound"
TOKEN_HEADER = "X-Needlecare-Token"
Style = Literal["json", "form"]


@dataclass(frozen=True)
class RecordedSms:
    """One text message the gateway accepted."""

    id: str
    received_at: datetime
    to: str | None
    text: str
    title: str
    path: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "to": self.to,
            "text": self.text,
            "title": self.title,
            "path": self.path,
            "payload": self.payload,
        }


@dataclass
class InboundResult:
    """needlecare's answer to a posted reply."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


class SmsGateway:
    """The gateway's state: where messages go, the fault mode, and where replies are posted."""

    def __init__(
        self,
        directory: Path,
        *,
        inbound_url: str | None = None,
        inbound_token: str | None = None,
        status: int = 200,
        hang_seconds: float = 0.0,
    ) -> None:
        self.directory = directory
        self.inbound_url = inbound_url
        self.inbound_token = inbound_token
        self.status = status
        self.hang_seconds = hang_seconds
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- running ----------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 1026) -> "SmsGateway":
        """Serve in a background thread; :meth:`stop` ends it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sms-gateway", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The Apprise URL that sends to this gateway (the recipient goes in the payload as ``to``)."""
        return f"json://127.0.0.1:{self.port}/sms"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---- what it does -----------------------------------------------------------------------------

    def record(self, path: str, payload: dict[str, Any], query: dict[str, str]) -> RecordedSms:
        stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        sms = RecordedSms(
            id=stamp,
            received_at=datetime.fromtimestamp(int(stamp.split("-")[0]) / 1e9, UTC),
            to=recipient(path, payload, query),
            text=str(payload.get("message", payload.get("body", ""))),
            title=str(payload.get("title", "")),
            path=path,
            payload=payload,
        )
        tmp = self.directory / f".{stamp}.tmp"
        tmp.write_text(json.dumps(sms.as_dict(), ensure_ascii=False), encoding="utf-8")
        tmp.rename(self.directory / f"{stamp}.json")  # atomic: readers never see half a message
        return sms

    def reply(self, from_phone: str, body: str, *, to: str | None = None, style: Style = "json") -> InboundResult:
        """Post ``body`` from ``from_phone`` to needlecare's inbound endpoint."""
        if not self.inbound_url:
            raise RuntimeError("this gateway has no inbound URL to post replies to (--inbound-url)")
        return post_inbound(self.inbound_url, self.inbound_token, from_phone, body, to=to, style=style)


def recipient(path: str, payload: dict[str, Any], query: dict[str, str]) -> str | None:
    for source in (payload, query):
        for key in RECIPIENT_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if _PHONE.match(last) else None


def post_inbound(
    url: str,
    token: str | None,
    from_phone: str,
    body: str,
    *,
    to: str | None = None,
    message_id: str | None = None,
    style: Style = "json",
    timeout: float = 15.0,
) -> InboundResult:
    """Post one inbound text as a provider's webhook: JSON ``{id, from, to, body}``, or Twilio's form fields
    (``MessageSid``, ``From``, ``To``, ``Body``). The token goes in the ``X-Needlecare-Token`` header."""
    message_id = message_id or f"gw-{uuid.uuid4().hex}"
    if style == "json":
        data = json.dumps({"id": message_id, "from": from_phone, "to": to, "body": body}).encode()
        content_type = "application/json"
    else:
        fields = {"MessageSid": message_id, "From": from_phone, "Body": body, **({"To": to} if to else {})}
        data = urlencode(fields).encode()
        content_type = "application/x-www-form-urlencoded"
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if token:
        headers[TOKEN_HEADER] = token
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return InboundResult(response.status, _json_or_empty(response.read()))
    except urllib.error.HTTPError as exc:
        return InboundResult(exc.code, _json_or_empty(exc.read()))


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"value": data}


def _handler_for(gateway: SmsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: message bodies and numbers never go to a log."""

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/healthz":
                self._answer(200, {"status": "ok"})
            else:
                self._answer(404, {"detail": "POST a message to any path, or POST /inbound a reply"})

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self._answer(413, {"detail": f"body must declare a Content-Length of at most {MAX_BODY_BYTES}"})
                return
            raw = self.rfile.read(int(length))
            payload = _payload(raw, self.headers.get("Content-Type", ""))
            if payload is None:
                self._answer(400, {"detail": "body must be a JSON object or form fields"})
                return
            if parts.path == "/_control":
                self._control(payload)
            elif parts.path == "/inbound":
                self._inbound(payload)
            else:
                self._message(parts.path, payload, {k: v[0] for k, v in parse_qs(parts.query).items()})

        def _message(self, path: str, payload: dict[str, Any], query: dict[str, str]) -> None:
            if gateway.hang_seconds > 0:
                time.sleep(gateway.hang_seconds)
                self.close_connection = True
                return  # no answer at all: the sender's timeout decides
            status = gateway.status
            if 200 <= status < 300:
                sms = gateway.record(path, payload, query)
                self._answer(status, {"id": sms.id, "status": "queued"})
            else:
                self._answer(status, {"detail": f"gateway told to answer {status}"})

        def _control(self, payload: dict[str, Any]) -> None:
            status, hang = payload.get("status", gateway.status), payload.get("hang_seconds", gateway.hang_seconds)
            if not (isinstance(status, int) and 100 <= status <= 599 and isinstance(hang, int | float) and hang >= 0):
                self._answer(400, {"detail": "status: an HTTP status 100-599; hang_seconds: a number >= 0"})
                return
            gateway.status, gateway.hang_seconds = status, float(hang)
            self._answer(200, {"status": gateway.status, "hang_seconds": gateway.hang_seconds})

        def _inbound(self, payload: dict[str, Any]) -> None:
            from_phone, body = payload.get("from"), payload.get("body")
            if not isinstance(from_phone, str) or not isinstance(body, str):
                self._answer(400, {"detail": 'send {"from": "+447700900123", "body": "7 0"}'})
                return
            to = payload.get("to") if isinstance(payload.get("to"), str) else None
            style: Style = "form" if payload.get("style") == "form" else "json"
            try:
                result = gateway.reply(from_phone, body, to=to, style=style)
            except (RuntimeError, OSError) as exc:
                self._answer(502, {"detail": f"could not post the reply to needlecare: {type(exc).__name__}"})
                return
            self._answer(result.status, result.body)

        def _answer(self, status: int, content: dict[str, Any]) -> None:
            data = json.dumps(content).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _payload(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """The fields of a JSON object or an url-encoded form (Apprise's form:// without attachments)."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/x-www-form-urlencoded":
            return {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


# ---- reading what it recorded ---------------------------------------------------------------------------


def read_sms(path: Path) -> RecordedSms:
    data = json.loads(path.read_text(encoding="utf-8"))
    return RecordedSms(
        id=str(data["id"]),
        received_at=datetime.fromisoformat(data["received_at"]),
        to=data.get("to"),
        text=str(data.get("text", "")),
        title=str(data.get("title", "")),
        path=str(data.get("path", "")),
        payload=dict(data.get("payload") or {}),
    )


def list_sms(directory: Path, limit: int = 200) -> list[RecordedSms]:
    """Newest first."""
    if not directory.is_dir():
        return []
    return [read_sms(p) for p in sorted(directory.glob("*.json"), reverse=True)[:limit]]


# ---- command line -------------------------------------------------------------------------------------


def sms_dir(settings: "Settings") -> Path:
    """Where the local gateway records messages and /outbox reads them: <data_dir>/sms."""
    return settings.data_dir / "sms"


def _default_inbound() -> tuple[str, str | None]:
    from needlecare.core.settings import get_settings

    settings = get_settings()
    url = f"http://{settings.web_host}:{settings.web_port}{INBOUND_PATH}"
    return url, settings.resolved_sms_inbound_token


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["reply"]:
        parser = argparse.ArgumentParser(prog="python -m needlecare.dev.smsgateway reply")
        parser.add_argument("from_phone", help="the patient's number, E.164 (e.g. +447700900123)")
        parser.add_argument("body", help='what the patient texts, e.g. "7 0" or STOP')
        parser.add_argument("--inbound-url", help="needlecare's inbound endpoint (default: the local web app)")
        parser.add_argument("--form", action="store_true", help="post Twilio-style form fields instead of JSON")
        reply = parser.parse_args(args[1:])
        url, token = _default_inbound()
        result = post_inbound(
            reply.inbound_url or url, token, reply.from_phone, reply.body, style="form" if reply.form else "json"
        )
        print(result.status, json.dumps(result.body))
        return 0 if result.status < 400 else 1
    parser = argparse.ArgumentParser(prog="python -m needlecare.dev.smsgateway", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1026)
    parser.add_argument("--dir", type=Path, help="where messages are recorded (default: <data_dir>/sms)")
    parser.add_argument("--inbound-url", help="where POST /inbound forwards replies (default: the local web app)")
    parser.add_argument("--status", type=int, default=200, help="answer every message with this HTTP status")
    parser.add_argument("--hang", type=float, default=0.0, help="hold each message this many seconds, no answer")
    options = parser.parse_args(args)
    url, token = _default_inbound()
    from needlecare.core.settings import get_settings

    directory = options.dir or sms_dir(get_settings())
    gateway = SmsGateway(
        directory,
        inbound_url=options.inbound_url or url,
        inbound_token=token,
        status=options.status,
        hang_seconds=options.hang,
    ).start(options.host, options.port)
    print(f"SMS gateway on http://{options.host}:{gateway.port}, recording into {directory}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
