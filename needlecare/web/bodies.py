"""The input boundary of the web app: request size, URL and form text, checked before any route sees them.

- **Size.** A declared ``Content-Length`` over :data:`MAX_BODY_BYTES` is refused (413) before a byte is read; a
  chunked or under-declared body is counted chunk by chunk as the route reads it and refused as soon as it
  passes the limit, so an oversized body never sits in memory whole. :func:`read_limited` is the reader the
  routes use (with their own, equal or smaller, limit).
- **URL.** The path and the query string must percent-decode to UTF-8 text without NUL or other control
  characters (400): a lone surrogate cannot be spelt in valid UTF-8, so it is refused too.
- **Forms.** An ``application/x-www-form-urlencoded`` body (buffered: it is at most the size limit) must
  decode to UTF-8 text without NUL (400).

JSON bodies are checked by :func:`needlecare.core.jsonin.load_json` (depth, numbers, NUL, surrogates), which
every JSON route reads through. Refusals say what is wrong and quote nothing of the request.
"""

import re
from urllib.parse import unquote_to_bytes

from fastapi import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
"""The largest request body any route takes (the webhook, the answers API and every form)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_FORMS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, LF and CR: a textarea sends them


_EXCEEDED = "needlecare.body_exceeded"  # scope key: this request's body was refused as too large


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")
        self.limit = limit


class BadInput(ValueError):
    """A request the boundary refuses; the message is safe to show (it names the part, never its content)."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or :class:`BodyTooLarge` once more than ``limit`` bytes are declared or received (again on every
    later read of the same request: the rest of the body is never read)."""
    if request.scope.get(_EXCEEDED):
        raise BodyTooLarge(limit)
    try:
        return await _read(request, limit)
    except BodyTooLarge:
        request.scope[_EXCEEDED] = True
        raise


async def _read(request: Request, limit: int) -> bytes:
    cached: bytes | None = getattr(request, "_body", None)  # already read by an earlier step of this request
    if cached is not None:
        if len(cached) > limit:
            raise BodyTooLarge(limit)
        return cached
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # later reads of this request (request.body(), form parsing) get the same bytes
    return body


def decoded_text(raw: bytes, part: str, *, plus_is_space: bool = False, allow_newlines: bool = False) -> str:
    """``raw`` percent-decoded as strict UTF-8, or :class:`BadInput` naming ``part``."""
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"the {part} is not UTF-8 text") from None
    if "\x00" in text:
        raise BadInput(f"the {part} contains a NUL character")
    if (_CONTROL_IN_FORMS if allow_newlines else _CONTROL).search(text):
        raise BadInput(f"the {part} contains a control character")
    return text


def check_url(scope: Scope) -> None:
    """Raise :class:`BadInput` for a path or query string that is not clean UTF-8 text."""
    raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogatepass")
    decoded_text(raw_path, "path")
    decoded_text(scope.get("query_string", b""), "query string", plus_is_space=True)


def refusal(scope: Scope, status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A 4xx answer in the form the client asked for: a small HTML page for browsers, JSON otherwise."""
    accept = ""
    for name, value in scope.get("headers", []):
        if name == b"accept":
            accept = value.decode("latin-1")
    if "text/html" in accept:
        title = "This request cannot be used"
        body = (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><main><h1>{title}</h1><p>{detail}</p></main></body></html>"
        )
        return HTMLResponse(body, status_code=status, headers=headers)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class InputBoundary:
    """ASGI middleware: the size limit (while streaming), clean URLs and clean form text, for every route."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_url(scope)
        except BadInput as exc:
            await refusal(scope, 400, str(exc))(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            await refusal(scope, 413, f"body exceeds {self.limit} bytes")(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            await self._form(scope, receive, send)
            return
        await self.app(scope, self._counting(scope, receive), send)

    def _counting(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` that raises :class:`BodyTooLarge` once the body passes the limit; after that it reports
        the client as gone, so nothing (a response's disconnect listener included) reads the rest."""
        received = 0
        exceeded = False
        limit = self.limit

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = scope[_EXCEEDED] = True
                    raise BodyTooLarge(limit)
            return message

        return counting_receive

    async def _form(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole (bounded) form, check its text, then hand the same bytes to the route."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await refusal(scope, 413, f"body exceeds {self.limit} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        try:
            for pair in body.split(b"&"):
                decoded_text(pair, "form", plus_is_space=True, allow_newlines=True)
        except BadInput as exc:
            await refusal(scope, 400, str(exc))(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)
