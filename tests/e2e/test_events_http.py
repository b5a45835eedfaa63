"""The CLI's event path: one POST to a real Prefect server's /events, stored with IDs only."""

import time

import pytest

from needlecare.core import events
from tests.conftest import free_port
from tests.e2e.stack import PrefectServer

pytestmark = pytest.mark.e2e


def test_an_event_posted_over_http_is_stored_by_prefect(
    prefect_server: PrefectServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)
    event = events.session_completed(987_654, "riverside-physio")
    events.http_emitter(event)
    deadline = time.monotonic() + 30
    while True:
        body = {"limit": 50, "filter": {"event": {"prefix": ["needlecare.session"]}}}
        found = [e for e in prefect_server.post("/events/filter", body)["events"] if e["id"] == str(event.id)]
        if found:
            break
        assert time.monotonic() < deadline, "the event never reached Prefect's store"
        time.sleep(0.5)
    [stored] = found
    assert stored["payload"] == {"session_id": 987_654, "clinic_id": "riverside-physio"}
    assert stored["resource"]["prefect.resource.id"] == "needlecare.session.987654"


def test_an_unreachable_api_loses_nothing_but_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    started = time.monotonic()
    events.http_emitter(events.session_completed(1, "riverside-physio"))  # never raises
    assert time.monotonic() - started < 6
    assert not events.prefect_api_reachable()
