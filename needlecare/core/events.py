"""The one place events leave the application: typed, IDs only, replaceable in tests."""

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


def prefect_emitter(event: AppEvent) -> None:
    """Emit through Prefect. Never raises: a lost event is found later by the dispatch flow."""
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


class _Holder:
    emitter: Emitter = prefect_emitter


def emit(event: AppEvent) -> None:
    _Holder.emitter(event)


def set_emitter(emitter: Emitter) -> Emitter:
    """Swap the emitter (tests collect events in a list); returns the previous one."""
    previous = _Holder.emitter
    _Holder.emitter = emitter
    return previous


def describe(event: AppEvent) -> dict[str, Any]:
    return {"event": event.event, "resource": event.resource_id, "payload": dict(event.payload)}
