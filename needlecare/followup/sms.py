"""Handing one text message to Apprise for one E.164 number, and turning its result into a DeliveryError.

The route is an Apprise URL without the recipient (``NEEDLECARE_PATIENT_SMS_URL`` or a clinic's own
``sms_url``). :func:`sms_url` puts the number in: where the URL has a ``{to}`` placeholder (e.g. the local
gateway's ``json://127.0.0.1:1026/sms?:to={to}``, which adds a ``to`` key to the JSON it posts), else as the
last path element, which is how twilio://, vonage://, sns:// and the other SMS plugins take their targets.

Apprise's HTTP plugins only say whether a send worked, so every HTTP exchange of a send is watched here (a
wrapper around ``requests.Session.send`` that acts only inside :func:`send_sms`): its status code decides what
retrying can do, as in :func:`needlecare.followup.delivery.failure_outcome` — a refused connection or a 5xx,
408 or 429 reply is transient; any other 4xx (a number the provider refuses, bad credentials) is permanent; a
request that was sent but never answered is ambiguous. ``on_accepted`` runs the instant a 2xx reply to the
sending request arrives (one request per message: json://, form://, twilio://, vonage://, sns:// ...), so the
caller's receipt is written before anything else. Apprise logs the number; its log is scrubbed before it is
kept as a reason.
"""

import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

import apprise
import requests

from needlecare.followup import routes
from needlecare.followup.delivery import (
    AmbiguousDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    scrub,
)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_NUMBER = re.compile(r"\+?[0-9][0-9 ()-]{6,}[0-9]")  # not dotted: keeps 127.0.0.1
TRANSIENT_CODES = frozenset({408, 425, 429})
# How requests words a connection that never opened (so nothing was sent): refused, no route, no name.
_NOT_SENT = ("NewConnectionError", "Connection refused", "Failed to resolve", "Name or service not known")

_state: ContextVar[dict[str, Any] | None] = ContextVar("needlecare_sms_state", default=None)
_original_send = requests.Session.send


def _watched_send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
    state = _state.get()
    if state is None:
        return _original_send(self, request, **kwargs)
    state["requests"] = state.get("requests", 0) + 1
    try:
        response = _original_send(self, request, **kwargs)
    except (requests.ConnectTimeout, requests.exceptions.SSLError) as error:
        state["error"], state["handover"] = type(error).__name__, False
        raise
    except requests.ConnectionError as error:
        # Refused before anything was sent, or cut off after the request went: tell them apart.
        refused = any(sign in str(error) for sign in _NOT_SENT)
        state["error"], state["handover"] = type(error).__name__, not refused
        raise
    except requests.Timeout as error:  # a read timeout: the request went, the answer did not come
        state["error"], state["handover"] = type(error).__name__, True
        raise
    state["code"] = response.status_code
    accepted = state.get("on_accepted")
    if 200 <= response.status_code < 300 and request.method != "GET" and accepted is not None:
        state["accepted"] = True
        accepted()
    return response


requests.Session.send = _watched_send  # type: ignore[method-assign]


def sms_url(base_url: str, to: str) -> str:
    """The route's URL with the recipient in: at ``{to}`` (percent-encoded), else as the last path element."""
    if "{to}" in base_url:
        return base_url.replace("{to}", quote(to, safe=""))
    head, sep, query = base_url.partition("?")
    return f"{head.rstrip('/')}/{to}{sep}{query}"


def scrub_numbers(text: str) -> str:
    """``text`` with every phone number (and email address) replaced by a placeholder."""
    return _NUMBER.sub("<number>", scrub(text))


def send_sms(
    base_url: str,
    to: str,
    text: str,
    *,
    timeout_seconds: float = 15,
    on_accepted: Callable[[], object] | None = None,
) -> None:
    """Send ``text`` to the E.164 number ``to`` through the Apprise URL ``base_url`` (without the recipient).

    Raises PermanentDeliveryError, TransientDeliveryError or AmbiguousDeliveryError with a reason that names
    no number. ``on_accepted`` runs the instant the provider answers the sending request with a 2xx."""
    if not to or not E164.match(to):
        raise PermanentDeliveryError("no usable phone number on file (E.164 form needed, e.g. +447700900123)")
    service = apprise.Apprise.instantiate(sms_url(base_url, to))
    if not service:
        raise PermanentDeliveryError("the SMS route URL could not be parsed by Apprise")
    service.request_rate_per_sec = 0
    service.socket_connect_timeout = timeout_seconds
    service.socket_read_timeout = timeout_seconds
    notifier = apprise.Apprise()
    notifier.add(service)
    state: dict[str, Any] = {"on_accepted": on_accepted}
    token = _state.set(state)
    try:
        with routes.LIMITS.slot(base_url), apprise.LogCapture(level=logging.DEBUG) as captured:
            ok = notifier.notify(body=text, title="", body_format=apprise.NotifyFormat.TEXT)
    finally:
        _state.reset(token)
    if ok:
        return
    log = scrub_numbers(captured.getvalue()) if hasattr(captured, "getvalue") else ""
    lines = [line.split(" - ", 2)[-1] for line in log.strip().splitlines() if " - " in line]
    kept = [line for line in lines if not line.startswith("Response Details") and "send() completed in" not in line]
    reason = " | ".join(kept[-3:]) or "Apprise reported a failure without a reason"
    raise classify(state, reason)


def classify(state: dict[str, Any], reason: str) -> PermanentDeliveryError | TransientDeliveryError:
    """What a failed send's HTTP exchange says retrying can do (see the module docstring)."""
    code = state.get("code")
    if state.get("error") is not None:
        if state.get("handover"):
            return AmbiguousDeliveryError(f"no reply after the text was handed over: {reason}")
        return TransientDeliveryError(f"SMS route unreachable: {reason}")
    if code is None:
        if state.get("requests", 0) == 0:  # the plugin refused before any request (e.g. a number it rejects)
            return PermanentDeliveryError(f"the SMS route refused the message before sending: {reason}")
        return TransientDeliveryError(reason)
    if 400 <= code < 500 and code not in TRANSIENT_CODES:
        return PermanentDeliveryError(f"SMS provider answered HTTP {code}: {reason}")
    return TransientDeliveryError(f"SMS provider answered HTTP {code}: {reason}")
