"""The one place events leave the application: typed, IDs only, replaceable in tests."""

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SESSION_COMPLETED = "needlecare.session.completed"
_NAMESPACE = uuid.UUID("6c2d3f1e-9a57-4b4e-8e55-5a0c1c7f0e11")


@dataclass(frozen=True)
class AppEvent:
    event: str
    resource_id: str
    payload: dict[str, int | str]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    labels: dict[str, str] = field(default_factory=dict)  # extra resource labels that triggers can match on


Emitter = Callable[[AppEvent], None]


def session_completed(session_id: int, clinic_id: str) -> AppEvent:
    """A stable event id, so Prefect can drop an exact duplicate emit (handlers stay idempotent)."""
    return AppEvent(
        event=SESSION_COMPLETED,
        resource_id=f"needlecare.session.{session_id}",
        payload={"session_id": session_id, "clinic_id": clinic_id},
        id=uuid.uuid5(_NAMESPACE, f"session-completed:{session_id}"),
    )


def configured_prefect_api_url() -> str:
    """The Prefect API this process talks to: PREFECT_API_URL if the environment names one, else the settings'."""
    from needlecare.core.settings import get_settings

    return os.environ.get("PREFECT_API_URL") or get_settings().prefect_api_url


def use_configured_prefect_api() -> str:
    """Point this process's Prefect client at :func:`configured_prefect_api_url` and forbid Prefect's throwaway
    ephemeral server (which would take the event and keep it to itself). Returns the URL."""
    url = configured_prefect_api_url()
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")
    return url


def prefect_api_reachable(timeout: float = 2.0) -> bool:
    """True when the configured Prefect API answers its health check."""
    import httpx

    url = configured_prefect_api_url().rstrip("/")
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_emitter(event: AppEvent) -> None:
    """Emit through the configured Prefect API. Never raises: a lost event is found later by the dispatch flow."""
    use_configured_prefect_api()
    from prefect.events import emit_event

    try:
        emit_event(
            event=event.event,
            resource={"prefect.resource.id": event.resource_id, **event.labels},
            payload=dict(event.payload),
            id=event.id,
        )
    except Exception:
        return


def http_emitter(event: AppEvent) -> None:
    """Emit with one POST to the configured Prefect API's ``/events``, importing no Prefect (seconds saved in a
    short-lived process such as the CLI). Sends ``PREFECT_API_KEY`` or ``PREFECT_API_AUTH_STRING`` when set.
    Never raises: a lost event is found later by the dispatch flow."""
    import base64
    from datetime import UTC, datetime

    import httpx

    headers = {}
    if key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    elif auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    body = {
        "id": str(event.id),
        "event": event.event,
        "occurred": datetime.now(UTC).isoformat(),
        "resource": {"prefect.resource.id": event.resource_id, **event.labels},
        "payload": dict(event.payload),
    }
    url = configured_prefect_api_url().rstrip("/") + "/events"
    try:
        httpx.post(url, json=[body], headers=headers, timeout=5.0).raise_for_status()
    except httpx.HTTPError:
        return


class _Holder:
    emitter: Emitter = prefect_emitter


def emit(event: AppEvent) -> None:
    _Holder.emitter(event)


def set_emitter(emitter: Emitter) -> Emitter:
    """Swap the emitter (tests collect events in a list); returns the previous one."""
    previous = _Holder.emitter
    _Holder.emitter = emitter
    return previous


def use_http_for_this_process() -> None:
    """A short-lived process (the CLI) emits with :func:`http_emitter`, unless another emitter was set."""
    if _Holder.emitter is prefect_emitter:
        _Holder.emitter = http_emitter


def describe(event: AppEvent) -> dict[str, Any]:
    return {"event": event.event, "resource": event.resource_id, "payload": dict(event.payload)}
