"""End to end on real parts: signed event → web app → Prefect event → served flow → SMTP sink."""

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from models import Notification, TreatmentSession
from needlecare.core import db as database
from needlecare.core.signing import sign
from needlecare.intake import ingest
from tests.conftest import CLINIC_SECRET
from tests.e2e.stack import PrefectServer, Stack
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE, event_body

pytestmark = pytest.mark.e2e
URL = "/api/v1/events/session-completed"
_counter = iter(range(100_000, 200_000))


def _post(stack: Stack, body: dict[str, Any], secret: str = CLINIC_SECRET) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.post(
        stack.web_url + URL,
        content=raw,
        timeout=30,
        headers={"Content-Type": "application/json", "X-Needlecare-Signature": sign(raw, secret)},
    )


def _notices(stack: Stack, session_ids: list[int]) -> list[Notification]:
    with Session(database.get_engine(stack.db_url)) as db:
        return list(db.exec(select(Notification).where(Notification.session_id.in_(session_ids))).all())  # type: ignore[union-attr]


def _mails_for(stack: Stack, session_ids: list[int]) -> list[str]:
    ids = {str(n.id) for n in _notices(stack, session_ids)}
    return [
        m.headers["X-Needlecare-Notification"]
        for m in stack.mails()
        if m.headers.get("X-Needlecare-Notification") in ids
    ]


def _wait_sent(stack: Stack, session_ids: list[int], timeout: float, what: str) -> None:
    def done() -> bool:
        notes = _notices(stack, session_ids)
        return (
            len(notes) == len(session_ids)
            and all(n.status == "sent" for n in notes)
            and len(_mails_for(stack, session_ids)) >= len(session_ids)
        )

    stack.wait_for(done, timeout, what)


def test_a_signed_event_yields_one_aftercare_email_and_no_patient_data_in_prefect(
    stack: Stack, prefect_server: PrefectServer
) -> None:
    body = event_body(next(_counter))
    response = _post(stack, body)
    assert response.status_code == 202, response.text
    sid = response.json()["session_id"]
    _wait_sent(stack, [sid], 90, "the aftercare email")
    [mail_id] = _mails_for(stack, [sid])
    mail = next(m for m in stack.mails() if m.headers["X-Needlecare-Notification"] == mail_id)
    assert mail.to == [PATIENT_EMAIL] and "Hi Sam" in mail.text and "tel:" in mail.text

    # The event reached Prefect, and everything Prefect stored carries IDs only. (Which run sent the email
    # depends on timing: the run this event started, or the fixture's probe run still lingering.)
    def event_stored() -> bool:
        found = prefect_server.post("/events/filter", {"limit": 50, "filter": {"event": {"prefix": ["needlecare."]}}})
        return any(e["payload"] == {"session_id": sid, "clinic_id": "riverside-physio"} for e in found["events"])

    stack.wait_for(event_stored, 60, "the event in Prefect's event store")
    runs = prefect_server.post("/flow_runs/filter", {"limit": 200, "sort": "EXPECTED_START_TIME_DESC"})
    logs = prefect_server.post("/logs/filter", {"limit": 200})
    stored = json.dumps(runs) + json.dumps(logs)
    stored += json.dumps(prefect_server.post("/events/filter", {"limit": 50}))
    ours = prefect_server.post("/events/filter", {"limit": 50, "filter": {"event": {"prefix": ["needlecare."]}}})
    assert any(e["payload"] == {"session_id": sid, "clinic_id": "riverside-physio"} for e in ours["events"])
    stored += json.dumps(ours)
    for private in (PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE, "Dana Reyes"):
        assert private not in stored, f"{private!r} leaked into Prefect"


def test_the_same_event_sent_again_and_concurrently_sends_one_email(stack: Stack) -> None:
    body = event_body(next(_counter))
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: _post(stack, body), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 7 + [202], codes
    sid = responses[0].json()["session_id"]
    assert {r.json()["session_id"] for r in responses} == {sid}
    _wait_sent(stack, [sid], 90, "the email after concurrent duplicates")
    assert _post(stack, body).json()["status"] == "duplicate"
    assert len(_mails_for(stack, [sid])) == 1


def test_a_bad_signature_stores_and_sends_nothing(stack: Stack) -> None:
    body = event_body(next(_counter))
    assert _post(stack, body, secret="whsec_wrong").status_code == 401
    with Session(database.get_engine(stack.db_url)) as db:
        found = db.exec(
            select(TreatmentSession).where(TreatmentSession.external_session_id == body["external_session_id"])
        ).first()
    assert found is None


def _running(server: PrefectServer, deployment: str) -> list[dict[str, Any]]:
    """Active runs of *this* stack's deployment (a previous stack's runner may have left orphaned runs)."""
    found = httpx.get(f"{server.api_url}/deployments/name/{deployment}", timeout=30)
    found.raise_for_status()
    active = {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}}
    runs = server.post(
        "/flow_runs/filter",
        {"limit": 50, "flow_runs": active, "deployments": {"id": {"any_": [found.json()["id"]]}}},
    )
    return list(runs)


def test_sessions_whose_events_were_lost_are_found_by_the_sweep(stack: Stack, prefect_server: PrefectServer) -> None:
    """Stored, committed, but no event emitted (as when Prefect drops it): the sweep sends them."""
    stack.wait_for(
        lambda: not _running(prefect_server, "aftercare/on-session-completed"), 180, "lingering aftercare runs to end"
    )
    with Session(database.get_engine(stack.db_url)) as db:
        sids = [
            ingest.record(db, ingest.validate(event_body(next(_counter))), actor="test").session_id for _ in range(3)
        ]
    _wait_sent(stack, sids, 180, "the sweep to send sessions without an event")
    assert len(_mails_for(stack, sids)) == 3
    sweeps = prefect_server.post(
        "/flow_runs/filter",
        {
            "limit": 50,
            "flows": {"name": {"any_": ["dispatch"]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        },
    )
    assert sweeps, "sweep runs completed while no aftercare run was active"


def test_prefect_server_down_while_events_arrive(stack: Stack, prefect_server: PrefectServer) -> None:
    """The server is stopped, events arrive (and are dropped), the server comes back: all sent once."""
    prefect_server.stop()
    try:
        responses = [_post(stack, event_body(next(_counter))) for _ in range(3)]
        assert [r.status_code for r in responses] == [202] * 3
        sids = [r.json()["session_id"] for r in responses]
    finally:
        prefect_server.start()
    _wait_sent(stack, sids, 150, "emails after the Prefect server came back")
    assert sorted(_mails_for(stack, sids)) == sorted(set(_mails_for(stack, sids)))
    assert len(_mails_for(stack, sids)) == 3


def test_a_backlog_is_shared_with_helper_runs_and_sent_once(stack: Stack, prefect_server: PrefectServer) -> None:
    """100 sessions stored while no run is alive: the next run asks for helper runs (DRAIN_HELPERS=2), which
    Prefect starts too; between them every notice is sent exactly once."""
    stack.wait_for(
        lambda: not _running(prefect_server, "aftercare/on-session-completed"), 180, "lingering aftercare runs to end"
    )
    with Session(database.get_engine(stack.db_url)) as db:
        sids = [
            ingest.record(db, ingest.validate(event_body(next(_counter))), actor="test").session_id for _ in range(100)
        ]
    _wait_sent(stack, sids, 180, "the backlog to be sent")
    assert sorted(_mails_for(stack, sids)) == sorted(set(_mails_for(stack, sids)))
    assert len(_mails_for(stack, sids)) == 100

    def helpers_ran() -> bool:
        runs = prefect_server.post("/flow_runs/filter", {"limit": 200, "sort": "EXPECTED_START_TIME_DESC"})
        return sum(1 for r in runs if r["parameters"].get("helper") and r["state_type"] == "COMPLETED") >= 2

    stack.wait_for(helpers_ran, 60, "two completed helper runs")
