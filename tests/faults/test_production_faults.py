"""Faults on the production stack of deploy/production.py (PostgreSQL, Redis, Prefect API and services apart,
two process workers, two uvicorn workers), 300 sessions each: nothing lost, nothing sent twice."""

from collections.abc import Iterator

import pytest

from tests.faults import scenarios
from tests.faults.harness import check, wait_until
from tests.faults.stacks import ProductionFaultStack, production_fault_stack

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


@pytest.fixture(scope="module")
def stack() -> Iterator[ProductionFaultStack]:
    with production_fault_stack(workers=2) as s:
        yield s


def test_prefect_deploy_keeps_the_pull_step_template(stack: ProductionFaultStack) -> None:
    """Each worker resolves the working directory from its own NEEDLECARE_HOME."""
    deployment = stack.stack.api("GET", "/deployments/name/aftercare/on-session-completed")
    assert isinstance(deployment, dict)
    step = deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == "{{ $NEEDLECARE_HOME }}"


def test_no_fault(stack: ProductionFaultStack) -> None:
    check(scenarios.no_fault(stack))


def test_every_event_twice_from_four_senders(stack: ProductionFaultStack) -> None:
    check(scenarios.every_event_twice(stack))


def test_smtp_refusing_connections(stack: ProductionFaultStack) -> None:
    check(scenarios.smtp_fault(stack, "refuse"))


def test_smtp_accepting_and_never_answering(stack: ProductionFaultStack) -> None:
    check(scenarios.smtp_fault(stack, "hang"))


def test_postgresql_stopped(stack: ProductionFaultStack) -> None:
    check(scenarios.database_stopped(stack))


def test_prefect_server_killed(stack: ProductionFaultStack) -> None:
    check(scenarios.prefect_killed(stack))


def test_a_worker_killed(stack: ProductionFaultStack) -> None:
    """Last: the killed worker stays dead, as a lost machine would."""
    check(scenarios.sender_killed(stack))


def test_the_killed_workers_flow_runs_are_marked_crashed(stack: ProductionFaultStack) -> None:
    """deploy/automations.yaml: no heartbeat for 90 s (the workers beat every 30 s) marks the run CRASHED."""
    assert stack.orphaned_runs, "the killed worker was running a flow run"

    def crashed() -> bool:
        body = {"flow_runs": {"id": {"any_": stack.orphaned_runs}}}
        runs = stack.stack.api("POST", "/flow_runs/filter", body)
        assert isinstance(runs, list)
        return all(r["state_type"] == "CRASHED" for r in runs)

    wait_until(stack, crashed, 150, "the killed worker's flow runs to be marked CRASHED")
