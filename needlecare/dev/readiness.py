"""Whether the pipeline can take an event: every deployment of deploy/prefect.yaml is registered on the
Prefect API, not paused, and each of its event triggers has a live automation.

A served or deployed flow registers its deployment first and its triggers' automations a moment later; an
event that arrives in between starts no run (the dispatch pass finds it later). Start-up waits on this.
"""

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
