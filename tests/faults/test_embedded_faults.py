"""Faults on the stack `make run` starts (Prefect server on SQLite, served flows, the application on SQLite,
default timings), 300 sessions each: nothing lost, nothing sent twice."""

from collections.abc import Iterator

import pytest

from tests.faults import scenarios
from tests.faults.harness import check
from tests.faults.stacks import EmbeddedStack, embedded_stack

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with embedded_stack() as s:
        yield s


def test_no_fault(stack: EmbeddedStack) -> None:
    check(scenarios.no_fault(stack))


def test_every_event_twice_from_four_senders(stack: EmbeddedStack) -> None:
    check(scenarios.every_event_twice(stack))


def test_smtp_refusing_connections(stack: EmbeddedStack) -> None:
    check(scenarios.smtp_fault(stack, "refuse"))


def test_smtp_accepting_and_never_answering(stack: EmbeddedStack) -> None:
    check(scenarios.smtp_fault(stack, "hang"))


def test_served_flows_killed(stack: EmbeddedStack) -> None:
    result = scenarios.sender_killed(stack)
    check(result)


def test_prefect_server_killed(stack: EmbeddedStack) -> None:
    check(scenarios.prefect_killed(stack))
