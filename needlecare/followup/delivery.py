"""Handing a rendered email to Apprise, and turning its result into an exception with a reason.

Failures are sorted by what retrying can do: a 5xx SMTP reply or an unusable address is permanent; a refused
connection, a timeout or a 4xx reply is transient; a message whose SMTP ``DATA`` was handed over but whose reply
never came is *ambiguous* (it may have been delivered) and is retried with the same ``Message-ID``, so a
receiving system can recognise the copy. Every network call has a timeout (``timeout_seconds``), which the
caller keeps shorter than its claim's lease.

Apprise's own text alternative is converted from the HTML and loses link URLs, so the text part
we rendered is substituted for it (see ``_text_part``). Apprise logs recipients' addresses; its
logger is kept out of the process logs and its messages are scrubbed before they are stored.
"""

import logging
import mimetypes
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from html import escape
from typing import Any
from urllib.parse import quote

import apprise
from apprise.attachment.memory import AttachMemory
from apprise.plugins.email import base as _email_base
from apprise.plugins.email import smtp as _email_smtp  # Apprise 2 opens SMTP connections here, not in base

from needlecare.core.rendering import RenderedEmail
from needlecare.core.retry import next_attempt
from needlecare.core.settings import Settings
from needlecare.followup import routes, smtpconn

_apprise_logger = logging.getLogger("apprise")
_apprise_logger.propagate = False  # it names recipients; we keep only a scrubbed copy
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")

_text_override: ContextVar[str | None] = ContextVar("needlecare_text_part", default=None)
_original_convert = _email_base.convert_between


def _convert_between(from_format: Any, to_format: Any, content: str) -> str:
    override = _text_override.get()
    if override is not None and from_format == apprise.NotifyFormat.HTML and to_format == apprise.NotifyFormat.TEXT:
        return override
    result: str = _original_convert(from_format, to_format, content)
    return result


_email_base.convert_between = _convert_between


class _SharedTLS:
    """Apprise builds a fresh ``ssl.create_default_context()`` for every email — ~45 ms each here,
    spent loading the CA bundle, even when the connection never uses TLS (measured: 75 % of a
    local send). This stand-in for the ``ssl`` module in Apprise's email plugin hands out a
    context built once per (check_hostname, verify_mode) and only when a TLS handshake needs it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(*args: Any, **kwargs: Any) -> "_LazyContext":
        return _LazyContext()


class _LazyContext:
    def __init__(self) -> None:
        self.check_hostname = True
        self.verify_mode = ssl.CERT_REQUIRED

    def _real(self) -> ssl.SSLContext:
        return _tls_context(self.check_hostname, self.verify_mode)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._real().wrap_socket(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


@lru_cache(maxsize=4)
def _tls_context(check_hostname: bool, verify_mode: ssl.VerifyMode) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = check_hostname
    context.verify_mode = verify_mode
    return context


_email_smtp.ssl = _SharedTLS()  # type: ignore[assignment]

_message_id: ContextVar[str | None] = ContextVar("needlecare_message_id", default=None)
_original_make_msgid = _email_base.make_msgid


def _make_msgid(*args: Any, **kwargs: Any) -> str:
    fixed = _message_id.get()
    return fixed if fixed is not None else _original_make_msgid(*args, **kwargs)


_email_base.make_msgid = _make_msgid
# Apprise checks an attachment's type against mimetypes.types_map, which the first guess_type() replaces with
# the system's fuller table; loaded once here, so senders on several threads never see the short default one.
if not mimetypes.inited:
    mimetypes.init()
_email_smtp.smtplib = smtpconn.TrackedSmtplib()  # type: ignore[assignment]
# Apprise otherwise hands each send to its shared pool of min(32, cores + 4) threads with a 60 s deadline;
# without a service deadline the send runs in the caller's thread, bounded by the socket timeouts set here.
_INLINE = apprise.AppriseAsset(service_timeout=0)


@dataclass(frozen=True)
class Attachment:
    name: str
    mimetype: str
    content: bytes


class DeliveryError(Exception):
    """Base for delivery failures; the message never contains an address."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later (connection refused, timeout, temporary SMTP error)."""


class AmbiguousDeliveryError(TransientDeliveryError):
    """The message was handed over but no reply came: it may or may not have been delivered."""


class PermanentDeliveryError(DeliveryError):
    """Will not succeed by retrying (no address, malformed URL, a 5xx SMTP reply)."""


def failure_outcome(
    error: DeliveryError,
    *,
    attempts: int,
    ambiguous_attempts: int,
    now: datetime,
    useful_until: datetime | None,
    settings: Settings,
) -> tuple[bool, str, dict[str, object]]:
    """After a failed send: (final?, the error to store, the row's new field values).

    Permanent errors are final at once; others are retried (capped, jittered backoff) until the next attempt
    would fall after ``useful_until``."""
    if isinstance(error, PermanentDeliveryError):
        return True, str(error), {}
    values: dict[str, object] = {
        "ambiguous_attempts": ambiguous_attempts + (1 if isinstance(error, AmbiguousDeliveryError) else 0)
    }
    retry_at = next_attempt(
        attempts,
        now=now,
        useful_until=useful_until,
        base=settings.delivery_backoff_seconds,
        cap=settings.delivery_backoff_max_seconds,
    )
    if retry_at is None:
        return True, f"gave up after {attempts} attempts, no longer useful: {error}", values
    return False, str(error), values | {"due_at": retry_at}


@contextmanager
def _text_part(text: str) -> Iterator[None]:
    token = _text_override.set(text)
    try:
        yield
    finally:
        _text_override.reset(token)


def scrub(text: str) -> str:
    return _EMAIL.sub("<address>", text)


def email_url(base_url: str, to: str, headers: dict[str, str] | None = None) -> str:
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}to={quote(to, safe='@')}&format=html"
    for name, value in (headers or {}).items():
        url += f"&+{quote(name)}={quote(value, safe='')}"
    return url


def _limit_time(service: Any, timeout_seconds: float) -> None:
    service.request_rate_per_sec = 0
    service.socket_connect_timeout = timeout_seconds  # smtplib uses it for every socket operation
    service.socket_read_timeout = timeout_seconds


def send_email(
    base_url: str,
    to: str,
    email: RenderedEmail,
    headers: dict[str, str] | None = None,
    attachments: list[Attachment] | None = None,
    *,
    message_id: str | None = None,
    timeout_seconds: float = 15,
    on_accepted: Callable[[], object] | None = None,
) -> None:
    """Send one message through a fresh Apprise object (no throttle between messages), in this thread, holding
    one of the route's slots (``routes.LIMITS``) while it talks to the server; inside
    ``smtpconn.reusing_connections`` it may go over a connection an earlier message of this thread opened.

    ``message_id`` fixes the ``Message-ID`` header, so every attempt at one message carries the same one.
    ``on_accepted`` runs the instant the SMTP server accepts the message, before its connection is closed."""
    if not to or "@" not in to:
        raise PermanentDeliveryError("no usable email address on file")
    notifier = apprise.Apprise(asset=_INLINE)
    service = apprise.Apprise.instantiate(email_url(base_url, to, headers), asset=_INLINE)
    if not service:
        raise PermanentDeliveryError("the patient email URL could not be parsed by Apprise")
    _limit_time(service, timeout_seconds)
    notifier.add(service)
    attach = apprise.AppriseAttachment()
    for item in attachments or []:
        attach.add(AttachMemory(content=item.content, name=item.name, mimetype=item.mimetype))
    state: dict[str, Any] = {}
    state_token, id_token = smtpconn.smtp_state.set(state), _message_id.set(message_id)
    accepted_token, key_token = (
        smtpconn.on_accepted.set(on_accepted),
        smtpconn.reuse_key.set(smtpconn.url_key(base_url)),
    )
    try:
        with (
            routes.LIMITS.slot(base_url),
            apprise.LogCapture(level=logging.DEBUG) as captured,
            _text_part(email.text),
        ):
            ok = notifier.notify(
                body=email.html,
                title=email.subject,
                body_format=apprise.NotifyFormat.HTML,
                attach=attach if attachments else None,
            )
    finally:
        smtpconn.smtp_state.reset(state_token)
        smtpconn.reuse_key.reset(key_token)
        _message_id.reset(id_token)
        smtpconn.on_accepted.reset(accepted_token)
    if not ok:
        log = scrub(captured.getvalue()) if hasattr(captured, "getvalue") else ""
        reason = " | ".join(line.split(" - ", 2)[-1] for line in log.strip().splitlines()[-3:])
        reason = reason or "Apprise reported a failure without a reason"
        code = state.get("code")
        if code is not None and code >= 500:
            raise PermanentDeliveryError(f"SMTP reply {code}: {reason}")
        if code is None and state.get("handover"):
            raise AmbiguousDeliveryError(f"no reply after the message was handed over: {reason}")
        raise TransientDeliveryError(f"SMTP reply {code}: {reason}" if code else reason)


@dataclass(frozen=True)
class Route:
    """One Apprise URL and the tags that send alerts to it."""

    url: str
    tags: tuple[str, ...]

    @property
    def is_email(self) -> bool:
        return self.url.split("://", 1)[0].lower() in _EMAIL_SCHEMES


_EMAIL_SCHEMES = ("mailto", "mailtos")


class AlertMessage(str):
    """An alert's plain-text body that may also carry an HTML version (``html``) for email routes."""

    html: str | None

    def __new__(cls, text: str, html: str | None = None) -> "AlertMessage":
        message = super().__new__(cls, text)
        message.html = html
        return message


def send_alert(
    routes: list[Route], tag: str, title: str, body: str, *, html: str | None = None, timeout_seconds: float = 15
) -> None:
    """Send a practitioner alert to every route tagged ``tag``.

    An email route gets a multipart message: the HTML version (``html``, or ``body.html`` of an
    :class:`AlertMessage`, or else :func:`html_of_text` of the body) and ``body`` itself as its text part
    (not Apprise's conversion, see ``_text_part``). Every other route gets the plain text.
    Apprise reports one result per send: if one of several routes fails, the retry sends to all of them
    again (a second alert is better than none).
    """
    text = str(body)
    html = html if html is not None else getattr(body, "html", None) or html_of_text(text)
    # Every URL is checked before anything is sent, so a bad one never leaves a half-sent alert behind.
    sends = [
        (_notifier(group, timeout_seconds), html if emails else None)
        for emails, group in ((True, [r for r in routes if r.is_email]), (False, [r for r in routes if not r.is_email]))
        if group
    ]
    matched, failures = False, []
    for notifier, as_html in sends:
        status, reason = _notify(notifier, tag, title, text, as_html)
        if status == apprise.AppriseResultStatus.NOMATCH:
            continue
        matched = True
        if reason is not None:
            failures.append(reason)
    if not matched:
        raise PermanentDeliveryError(f"no alert route is tagged '{tag}'")
    if failures:
        raise TransientDeliveryError(" | ".join(failures))


_URL = re.compile(r"https?://[^\s<>\"']+")


def html_of_text(text: str) -> str:
    """A plain-text alert as a small readable HTML email: paragraphs, line breaks, links that work, at most
    600 px wide (rather than Apprise's conversion, which turns every space into ``&nbsp;``)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [
            _URL.sub(
                lambda m: f'<a href="{m.group(0)}" style="color:#0b57a4;">{m.group(0)}</a>', escape(line, quote=False)
            )
            for line in block.splitlines()
        ]
        paragraphs.append(f'<p style="margin:0 0 14px;">{"<br>".join(lines)}</p>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body style="margin:0; padding:16px; font-family:Arial, Helvetica, sans-serif; font-size:16px; '
        'line-height:1.5; color:#1a1a1a;"><div style="max-width:600px; overflow-wrap:anywhere;">'
        + "".join(paragraphs)
        + "</div></body></html>"
    )


def _notifier(routes: list[Route], timeout_seconds: float) -> apprise.Apprise:
    notifier = apprise.Apprise()
    for route in routes:
        service = apprise.Apprise.instantiate(route.url, tag=list(route.tags))
        if not service:
            raise PermanentDeliveryError("an alert URL could not be parsed by Apprise")
        _limit_time(service, timeout_seconds)
        notifier.add(service)
    return notifier


def _notify(notifier: apprise.Apprise, tag: str, title: str, text: str, html: str | None) -> tuple[Any, str | None]:
    """One Apprise send (as HTML with ``text`` as its text part when ``html`` is given): the result status,
    and the failure's reason (None when it went)."""
    body_format = apprise.NotifyFormat.TEXT if html is None else apprise.NotifyFormat.HTML
    with apprise.LogCapture(level=logging.DEBUG) as captured, _text_part(text):
        ok = notifier.notify(body=text if html is None else html, title=title, body_format=body_format, tag=tag)
    if ok.status == apprise.AppriseResultStatus.NOMATCH:  # falsy, like a failure: tell them apart first
        return ok.status, None
    if ok:
        return ok.status, None
    log = scrub(captured.getvalue()) if hasattr(captured, "getvalue") else ""
    reason = " | ".join(line.split(" - ", 2)[-1] for line in log.strip().splitlines()[-3:])
    return ok.status, reason or "Apprise reported a failure without a reason"
