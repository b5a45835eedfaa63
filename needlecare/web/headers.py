"""Security headers on every response, patient pages included.

- ``Content-Security-Policy``: nothing loads from anywhere but this site, no script runs at all, a ``<style>``
  element applies only with the response's nonce (templates write ``<style nonce="{{ csp_nonce() }}">``), no
  page can be framed (``frame-ancestors 'none'``), forms post only here. No ``'unsafe-inline'``, except
  ``style-src-attr`` on the staff dashboard, whose charts are matplotlib SVGs styled by attributes (the SVG's one
  ``<style>`` element is allowed by its hash). A response that sets its own policy keeps its directives; the
  missing ones are added. Swagger UI and ReDoc (``/docs``, ``/redoc``; never in production) get the sources
  they load from.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin`` (unless the
  route set its own), and ``Strict-Transport-Security`` when ``PUBLIC_BASE_URL`` is https.

Settings decide "development on loopback" from ``WEB_HOST``; uvicorn can be started on another interface
regardless. So while the app runs on the published development key, a request that arrived on a socket bound
to a non-loopback address is answered 503 and nothing else: links signed with that key never reach a network.
"""

import base64
import hashlib
import ipaddress
import secrets
from contextvars import ContextVar

from jinja2 import Environment
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from needlecare.core.settings import DEV_SECRET_KEY, Settings
from needlecare.web.templating import templates

HSTS = "max-age=31536000"
# The one <style> element matplotlib writes into every SVG chart (matplotlib.backends.backend_svg).
MATPLOTLIB_SVG_STYLE = "*{stroke-linejoin: round; stroke-linecap: butt}"
_nonce: ContextVar[str] = ContextVar("csp_nonce", default="")


def csp_nonce() -> str:
    """The nonce of the response being rendered ("" outside a request: the style then does not apply)."""
    return _nonce.get()


def register(env: Environment) -> None:
    """Make ``csp_nonce()`` available to the templates of ``env``."""
    env.globals["csp_nonce"] = csp_nonce


register(templates.env)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _base_policy(nonce: str) -> dict[str, str]:
    return {
        "default-src": "'none'",
        "style-src": f"'self' 'nonce-{nonce}'",
        "img-src": "'self' data:",
        "form-action": "'self'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
    }


def policy_for(path: str, nonce: str) -> dict[str, str]:
    """The policy (directive -> sources) this app sends for ``path``."""
    policy = _base_policy(nonce)
    if path == "/dashboard" or path.startswith("/dashboard/"):
        policy["style-src"] += " " + _hash(MATPLOTLIB_SVG_STYLE)
        policy["style-src-attr"] = "'unsafe-inline'"
    elif path.startswith(("/docs", "/redoc")):
        cdn = "https://cdn.jsdelivr.net"
        policy.update(
            {
                "script-src": f"{cdn} 'unsafe-inline'",
                "style-src": f"{cdn} https://fonts.googleapis.com 'unsafe-inline'",
                "font-src": "https://fonts.gstatic.com",
                "img-src": "'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
                "connect-src": "'self'",
                "worker-src": "blob:",
            }
        )
    return policy


def _merge(own: str, defaults: dict[str, str]) -> str:
    """``own`` policy with every directive it does not name taken from ``defaults``."""
    named = {part.strip().split(" ", 1)[0].lower() for part in own.split(";") if part.strip()}
    extra = [f"{k} {v}" for k, v in defaults.items() if k not in named]
    return "; ".join([own.strip().rstrip(";"), *extra]) if own.strip() else render(defaults)


def render(policy: dict[str, str]) -> str:
    return "; ".join(f"{k} {v}" for k, v in policy.items())


class SecurityHeaders:
    """ASGI middleware; add it last (outermost), so that error responses carry the headers too."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.https = settings.https
        self.loopback_only = settings.secret_key.get_secret_value() == DEV_SECRET_KEY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        path: str = scope.get("path", "")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                defaults = policy_for(path, nonce)
                own = headers.get("content-security-policy")
                headers["Content-Security-Policy"] = _merge(own, defaults) if own else render(defaults)
                headers["X-Content-Type-Options"] = "nosniff"
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if self.https:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        token = _nonce.set(nonce)
        try:
            if self.loopback_only and not _arrived_on_loopback(scope):
                await _refuse_off_loopback(with_headers)
                return
            await self.app(scope, receive, with_headers)
        finally:
            _nonce.reset(token)


def _arrived_on_loopback(scope: Scope) -> bool:
    """False only when the request came in on a socket bound to a non-loopback IP address."""
    server = scope.get("server")
    if not server:
        return True  # a unix socket
    try:
        return ipaddress.ip_address(str(server[0])).is_loopback
    except ValueError:
        return True  # not an address (an in-process test client)


async def _refuse_off_loopback(send: Send) -> None:
    body = (
        b"This server runs with the published development NEEDLECARE_SECRET_KEY and answers on loopback only. "
        b"Set NEEDLECARE_SECRET_KEY to a long random value before serving it on a network.\n"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
