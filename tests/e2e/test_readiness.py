"""needlecare.dev.readiness against a real Prefect server: a deployment without its live trigger is not ready."""

import httpx
import pytest

from needlecare.dev.readiness import not_ready
from tests.conftest import free_port
from tests.e2e.stack import PrefectServer

pytestmark = pytest.mark.e2e


def test_a_deployment_registered_before_its_trigger_is_reported_not_ready(prefect_server: PrefectServer) -> None:
    flow = prefect_server.post("/flows/", {"name": "aftercare"})
    deployment = prefect_server.post("/deployments/", {"name": "on-session-completed", "flow_id": flow["id"]})
    try:
        pending = not_ready(prefect_server.api_url)
        assert "deployment on-session-completed: 0 of 1 event triggers live" in pending
        assert "deployment dispatch not registered" in pending
    finally:
        httpx.delete(f"{prefect_server.api_url}/deployments/{deployment['id']}", timeout=30).raise_for_status()


def test_an_unreachable_api_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    assert not_ready(url, timeout=2) == [f"the Prefect API at {url} did not answer (ConnectError)"]
