"""Serve the deployments described in deploy/prefect.yaml from this process (`make run`)."""

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger, DeploymentTriggerTypes, TriggerTypes
from prefect.schedules import Cron, Interval, Schedule

from needlecare.core.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "deploy" / "prefect.yaml"


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    if not isinstance(flow, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return flow


DISPATCH_DEPLOYMENT = "dispatch"


def build_schedules(item: dict[str, Any], dispatch_interval: int | None = None) -> list[Schedule]:
    """The schedules of one deployment entry: ``interval`` (seconds) and ``cron`` (with optional ``timezone``).

    ``dispatch_interval`` (NEEDLECARE_DISPATCH_INTERVAL_SECONDS) replaces the interval of the ``dispatch``
    deployment only; every other schedule is taken as written.
    """
    schedules: list[Schedule] = []
    for entry in item.get("schedules") or []:
        timezone = entry.get("timezone")
        if "cron" in entry:
            schedules.append(Cron(entry["cron"], timezone=timezone))
        elif "interval" in entry:
            seconds = entry["interval"]
            if item["name"] == DISPATCH_DEPLOYMENT and dispatch_interval:
                seconds = dispatch_interval
            schedules.append(Interval(seconds, timezone=timezone))
        else:
            raise ValueError(f"deployment {item['name']}: a schedule needs 'interval' or 'cron', got {sorted(entry)}")
    return schedules


def build_deployments(spec_path: Path = SPEC, dispatch_interval: int | None = None) -> list[RunnerDeployment]:
    spec = yaml.safe_load(spec_path.read_text())
    deployments = []
    for item in spec["deployments"]:
        triggers: list[DeploymentTriggerTypes | TriggerTypes] = [
            DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"}) for t in item.get("triggers", [])
        ]
        schedules = build_schedules(item, dispatch_interval)
        deployment = load_flow(item["entrypoint"]).to_deployment(
            name=item["name"],
            description=item.get("description"),
            parameters=item.get("parameters") or {},
            triggers=triggers or None,
            schedules=schedules or None,
        )
        if not isinstance(deployment, RunnerDeployment):  # to_deployment is sync outside an event loop
            raise TypeError("to_deployment returned a coroutine; call build_deployments outside an event loop")
        deployments.append(deployment)
    return deployments


def main() -> None:
    settings = get_settings()
    serve(*build_deployments(dispatch_interval=settings.dispatch_interval_seconds), limit=None)


if __name__ == "__main__":
    main()
