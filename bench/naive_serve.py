"""Serve the naive deployment: one flow run per session-completed event (no debounce, no drain).

Run as ``python -m bench.naive_serve`` with PREFECT_API_URL and NEEDLECARE_* set (the bench does).
"""

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from bench import NAIVE_DEPLOYMENT
from bench.naive_flow import naive_aftercare


def main() -> None:
    trigger = DeploymentEventTrigger(
        expect={"needlecare.session.completed"},
        match={"prefect.resource.id": "needlecare.session.*"},
        parameters={"session_id": "{{ event.payload.session_id }}"},
    )
    deployment = naive_aftercare.to_deployment(name=NAIVE_DEPLOYMENT, triggers=[trigger])
    if not isinstance(deployment, RunnerDeployment):  # to_deployment is sync outside an event loop
        raise TypeError("to_deployment returned a coroutine")
    serve(deployment, limit=None)


if __name__ == "__main__":
    main()
