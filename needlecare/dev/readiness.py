"""Whether the pipeline can take an event: every deployment of deploy/prefect.yaml is registered on the
Prefect API, not paused, and each of its event triggers has a live automation.

A served or deployed flow registers its deployment first and its triggers' automations a moment later; an
event that arrives in between starts no run (the dispatch pass finds it later). Start-up waits on this.
"""

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

SPEC = Path(__file__).resolve().parents[2] / "deploy" / "prefect.yaml"


def _enabled_triggers(item: dict[str, Any]) -> int:
    return sum(1 for t in item.get("triggers") or [] if t.get("enabled", True))


def not_ready(api_url: str, spec_path: Path = SPEC, timeout: float = 15.0) -> list[str]:
    """What is not ready yet, one phrase each; an empty list when the pipeline can take an event."""
    items = yaml.safe_load(spec_path.read_text())["deployments"]
    base = api_url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            found = client.post(
                "/deployments/filter", json={"deployments": {"name": {"any_": [i["name"] for i in items]}}}
            )
            found.raise_for_status()
            by_name = {d["name"]: d for d in found.json()}
            missing: list[str] = []
            for item in items:
                deployment = by_name.get(item["name"])
                if deployment is None:
                    missing.append(f"deployment {item['name']} not registered")
                    continue
                if deployment.get("paused"):
                    missing.append(f"deployment {item['name']} paused")
                wanted = _enabled_triggers(item)
                if not wanted:
                    continue
                related = client.get(f"/automations/related-to/prefect.deployment.{deployment['id']}")
                related.raise_for_status()
                live = sum(1 for a in related.json() if a.get("enabled"))
                if live < wanted:
                    missing.append(f"deployment {item['name']}: {live} of {wanted} event triggers live")
            return missing
    except httpx.HTTPError as exc:
        return [f"the Prefect API at {base} did not answer ({type(exc).__name__})"]


PROBE_EVENT = "needlecare.session.completed"


def probe_trigger(api_url: str, timeout: float = 15.0) -> bool:
    """Send a start-up probe through the aftercare trigger: a session-completed event for session 0 (no such
    session: the run it starts only drains what is pending). True once an ``aftercare`` run has been created
    after the probe — the trigger is loaded in the server's memory, not only stored. Call repeatedly."""
    from datetime import UTC, datetime

    base = api_url.rstrip("/")
    sent_at = datetime.now(UTC).isoformat()
    probe = {
        "id": str(uuid.uuid4()),
        "event": PROBE_EVENT,
        "occurred": sent_at,
        "resource": {"prefect.resource.id": "needlecare.session.0"},
        "payload": {"session_id": 0, "clinic_id": "probe"},
    }
    try:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            client.post("/events", json=[probe]).raise_for_status()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                body = {
                    "flows": {"name": {"any_": ["aftercare"]}},
                    "flow_runs": {"expected_start_time": {"after_": sent_at}},
                }
                if client.post("/flow_runs/filter", json=body).raise_for_status().json():
                    return True
                time.sleep(0.5)
    except httpx.HTTPError:
        return False
    return False
