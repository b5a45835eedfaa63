"""What the web app answers when something below it fails, and what it logs about it.

- The application database unreachable (refused, stopped, timed out, pool exhausted): **503** with
  ``Retry-After``, so a clinic's system or a browser tries again; the transaction was rolled back, so nothing
  was stored half-way and no event was emitted.
- A value the request carried that cannot be read or is out of range, found below the input boundary
  (:data:`UNREADABLE`: a number beyond the database's integer columns, a date past year 9999, a digit that
  ``int()`` does not read, text the database refuses): **422**, or **413** for a body that passed the size
  limit while streaming. The transaction was rolled back, so nothing was stored.
- Anything else unexpected: **500** with a reference.

Either way the log line carries the exception *type*, the method, the route path (tokens redacted) and the
reference — never the exception's message or traceback, which can hold request data or SQL parameters.
Both are handled in a middleware inside Starlette's outermost error middleware, which would otherwise
re-raise the exception to the server and have its traceback logged.
"""

import logging
import uuid
from typing import Any

from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from needlecare.web.bodies import BodyTooLarge, refusal
from needlecare.web.logfilter import redact

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 30
# Errors that mean "the database is not there right now", not "this request is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


# Errors that mean "a value in this request cannot be used": a parse or range error, not a fault of the app.
UNREADABLE: tuple[type[BaseException], ...] = (
    sa_exc.DataError,  # PostgreSQL: integer out of range, NUL in text, invalid input syntax
    OverflowError,  # SQLite: an integer beyond 64 bits; dates past year 9999 or before year 1
    ValueError,  # int() of a non-ASCII digit, more than 4300 digits, an impossible date (incl. UnicodeError)
)
UNREADABLE_DETAIL = (
    "a value in the request cannot be read or is out of range (a number too large, a date out of range, "
    "or text that cannot be stored); nothing was stored"
)


def is_unavailable(error: BaseException) -> bool:
    return isinstance(error, UNAVAILABLE)


def is_unreadable(error: BaseException) -> bool:
    """A parse or range error from the request's values (also when SQLAlchemy wraps one in a StatementError)."""
    if isinstance(error, sa_exc.StatementError) and not isinstance(error, sa_exc.DBAPIError):
        return isinstance(error.orig, UNREADABLE)
    return isinstance(error, UNREADABLE)


def error_response(request: Request, error: BaseException) -> Response:
    reference = uuid.uuid4().hex[:12]
    path = redact(request.url.path)
    if isinstance(error, BodyTooLarge):
        return refusal(request.scope, 413, str(error))
    if is_unreadable(error):
        log.warning("refused %s on %s %s (ref %s)", type(error).__name__, request.method, path, reference)
        return refusal(request.scope, 422, f"{UNREADABLE_DETAIL} (reference {reference})")
    if is_unavailable(error):
        log.error("database unavailable (%s) on %s %s (ref %s)", type(error).__name__, request.method, path, reference)
        status, detail = 503, "the database is unavailable; nothing was stored. Try again in a minute."
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    else:
        log.error("unhandled %s on %s %s (ref %s)", type(error).__name__, request.method, path, reference)
        status, detail, headers = 500, "internal error; nothing was stored half-way", {}
    if "text/html" in request.headers.get("accept", ""):
        title = "Please try again shortly" if status == 503 else "Something went wrong"
        body = (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><main><h1>{title}</h1><p>{detail}</p><p>Reference: {reference}</p></main></body></html>"
        )
        return HTMLResponse(body, status_code=status, headers=headers)
    return JSONResponse({"detail": detail, "reference": reference}, status_code=status, headers=headers)


class ErrorBoundary:
    """ASGI middleware: turn any exception from the app into a 503 or 500 response without re-raising it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if started:  # the response is on its way; it can only be cut short
                log.error("%s after the response started on %s", type(error).__name__, redact(scope.get("path", "")))
                return
            await error_response(Request(scope), error)(scope, receive, send)
