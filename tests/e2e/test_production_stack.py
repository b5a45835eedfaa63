"""The production stack of deploy/production.py, run for real on loopback: PostgreSQL, Redis, the Prefect API
and its services in separate processes, `prefect deploy --all`, two process workers, the web app with two
uvicorn workers. 60 signed events give 60 aftercare emails, one each; one worker killed with SIGKILL, 20 more
give 20 more, one each."""

import itertools
import json
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from deploy.production import ProductionStack, production_stack
from models import Notification
from needlecare.core import db as database
from needlecare.core.signing import sign
from needlecare.dev.mailcapture import list_mail
from needlecare.intake.sample import sample_event

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.faults,
]

DEADLINE = 300.0  # a process worker adds ~5-7 s per flow run; the machine may be shared
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def stack() -> Iterator[ProductionStack]:
    root = Path(tempfile.mkdtemp(prefix="needlecare-production-"))
    root.chmod(0o755)  # the PostgreSQL cluster below it runs as the postgres user
    started = time.monotonic()
    try:
        with production_stack(root, workers=2, web_workers=2, say=lambda m: print(m, flush=True)) as s:
            print(f"stack up in {time.monotonic() - started:.1f} s", flush=True)
            yield s
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _post_sessions(stack: ProductionStack, count: int) -> list[int]:
    session_ids = []
    for _ in range(count):
        n = next(_ids)
        event = sample_event(external_session_id=f"PROD-{n:04d}")
        event["patient"].update(external_id=f"PT-PROD-{n}", email=f"patient{n}@example.org")
        body = json.dumps(event).encode()
        signature = sign(body, stack.clinic_secret)
        headers = {"Content-Type": "application/json", "X-Needlecare-Signature": signature}
        response = httpx.post(
            f"{stack.web_url}/api/v1/events/session-completed", content=body, headers=headers, timeout=30
        )
        assert response.status_code == 202, response.text
        session_ids.append(response.json()["session_id"])
    return session_ids


def _aftercare_ids(stack: ProductionStack, session_ids: list[int]) -> set[str]:
    engine = database.get_engine(stack.env["NEEDLECARE_DATABASE_URL"])
    with Session(engine) as db:
        rows = db.exec(select(Notification).where(Notification.session_id.in_(session_ids))).all()  # type: ignore[union-attr]
        return {str(n.id) for n in rows if n.kind == "aftercare"}


def _mail_ids(stack: ProductionStack) -> list[str]:
    assert stack.mail_dir is not None
    return [m.headers.get("X-Needlecare-Notification", "") for m in list_mail(stack.mail_dir, limit=100_000)]


def _wait_for_mails(stack: ProductionStack, session_ids: list[int], what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE:
        if dead := stack.dead():
            pytest.fail(f"{dead[0].name} exited ({dead[0].process.returncode}); logs in {stack.log_dir}")
        wanted = _aftercare_ids(stack, session_ids)
        if len(wanted) == len(session_ids) and wanted <= set(_mail_ids(stack)):
            return time.monotonic() - started
        time.sleep(1)
    got = len(_aftercare_ids(stack, session_ids) & set(_mail_ids(stack)))
    pytest.fail(f"{what}: {got} of {len(session_ids)} emails after {DEADLINE:.0f} s; logs in {stack.log_dir}")


def _assert_one_email_each(stack: ProductionStack, session_ids: list[int]) -> None:
    wanted = _aftercare_ids(stack, session_ids)
    counts = Counter(_mail_ids(stack))
    assert len(wanted) == len(session_ids)
    assert {k: counts[k] for k in wanted if counts[k] != 1} == {}, "an aftercare email missing or sent twice"
    assert [k for k, c in counts.items() if c > 1] == [], "some email was sent twice"


WORKER_LINE = re.compile(r"Worker '([^']+)' submitting flow run")


def _flow_runs_by_worker(stack: ProductionStack) -> list[dict[str, Any]]:
    """Every flow run so far with its deployment, state and the worker that submitted it (from its log)."""
    deployments = stack.api("POST", "/deployments/filter", {})
    assert isinstance(deployments, list)
    names = {d["id"]: d["name"] for d in deployments}
    runs = stack.api("POST", "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC", "limit": 200})
    assert isinstance(runs, list)
    table = []
    for run in runs:
        if run["state_type"] == "SCHEDULED":
            continue
        logs = stack.api(
            "POST",
            "/logs/filter",
            {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "sort": "TIMESTAMP_ASC", "limit": 20},
        )
        assert isinstance(logs, list)
        worker = next((m.group(1) for log in logs if (m := WORKER_LINE.search(log["message"]))), "?")
        table.append(
            {
                "id": run["id"],
                "deployment": names.get(run["deployment_id"], "?"),
                "worker": worker,
                "state": run["state_type"],
                "start": run.get("start_time"),
                "parameters": run["parameters"],
            }
        )
    return table


def _print_runs(title: str, runs: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    for r in runs:
        print(f"  {r['start'] or '-':32} {r['deployment']:28} {r['worker']:20} {r['state']:10} {r['parameters']}")
    print("  per worker:", dict(Counter((r["worker"], r["deployment"]) for r in runs)), flush=True)


def test_production_stack_sends_each_aftercare_email_once_through_a_worker_loss(stack: ProductionStack) -> None:
    # `prefect deploy` keeps the pull step's template; each worker resolves it from its own NEEDLECARE_HOME
    deployment = stack.api("GET", "/deployments/name/aftercare/on-session-completed")
    assert isinstance(deployment, dict)
    step = deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == "{{ $NEEDLECARE_HOME }}"
    first = _post_sessions(stack, 60)
    took = _wait_for_mails(stack, first, "first 60 sessions")
    print(f"\n60 aftercare emails {took:.1f} s after the last event was accepted", flush=True)
    _assert_one_email_each(stack, first)
    before = _flow_runs_by_worker(stack)
    _print_runs("flow runs before the kill", before)
    # Kill the worker that took the latest run (its flow run may still be lingering): a lost machine.
    latest = next((r["worker"] for r in reversed(before) if r["worker"] != "?"), stack.workers[0].name)
    victim = next(i for i, w in enumerate(stack.workers) if w.name == latest)
    killed = stack.kill_worker(victim)
    print(f"killed {killed.name} (pid {killed.process.pid}) with SIGKILL", flush=True)

    second = _post_sessions(stack, 20)
    took = _wait_for_mails(stack, second, "20 sessions after the worker was killed")
    print(f"20 more aftercare emails {took:.1f} s after the last event was accepted", flush=True)
    _assert_one_email_each(stack, first + second)
    assert len(_mail_ids(stack)) == 80, "only the 80 aftercare emails were sent"
    after = _flow_runs_by_worker(stack)
    seen = {r["id"] for r in before}
    new = [r for r in after if r["id"] not in seen]
    _print_runs("flow runs after the kill", new)
    assert all(r["worker"] != killed.name for r in new), "a dead worker cannot submit runs"
    stuck = [r for r in after if r["worker"] == killed.name and r["state"] == "RUNNING"]
    print(f"runs of {killed.name} still RUNNING in Prefect after its death: {len(stuck)}", flush=True)
