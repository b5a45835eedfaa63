"""Burst throughput on the production stack with one Prefect worker and with two.

For each worker count, deploy/production.py starts its whole stack (PostgreSQL, Redis, the Prefect API and
services apart, the web app with two uvicorn workers, the local SMTP capture) in a temp dir; a warm-up of 20
sessions is sent; then, with the work pool paused, a burst of ``--burst`` signed sessions from four threads
(the ingress rate is reported on its own). The pool is resumed and the drain timed: seconds from the resume
to the moment every aftercare email of the burst was received, emails per second, and which worker ran the
flow runs and how many messages each claimed (from the runs' own "done" log lines). The ratio is two
workers against one, both runs in this process on this machine.

    .venv/bin/python -m bench.workers [--burst 600] [--out bench/results/workers-DATE.json]
"""

import argparse
import ast
import json
import re
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, select

from deploy.production import POOL, ProductionStack, production_stack
from models import Notification
from needlecare.core import db as database
from needlecare.core.signing import sign
from needlecare.dev.mailcapture import list_mail
from needlecare.intake.sample import sample_event

WORKER_LINE = re.compile(r"Worker '([^']+)' submitting flow run")
DONE_LINE = re.compile(r"done: (\{.*\})")


def _post(stack: ProductionStack, tag: str, count: int, senders: int = 4) -> tuple[list[int], float]:
    def one(n: int) -> int:
        event = sample_event(external_session_id=f"B-{tag}-{n:05d}")
        event["patient"].update(external_id=f"PT-B-{tag}-{n}", email=f"b{n}.{tag}@example.org")
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", "X-Needlecare-Signature": sign(body, stack.clinic_secret)}
        url = f"{stack.web_url}/api/v1/events/session-completed"
        for _ in range(60):
            response = httpx.post(url, content=body, headers=headers, timeout=30)
            if response.status_code == 202:
                return int(response.json()["session_id"])
            time.sleep(1)
        raise RuntimeError(f"not accepted: {response.status_code} {response.text[:200]}")

    started = time.monotonic()
    with ThreadPoolExecutor(senders) as pool:
        ids = list(pool.map(one, range(count)))
    return ids, started


def _wait_sent(stack: ProductionStack, session_ids: list[int], timeout: float = 900) -> float:
    engine = database.get_engine(stack.env["NEEDLECARE_DATABASE_URL"])
    assert stack.mail_dir is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as db:
            rows = db.exec(select(Notification).where(Notification.session_id.in_(session_ids))).all()  # type: ignore[union-attr]
        wanted = {str(n.id) for n in rows if n.kind == "aftercare"}
        got = {m.headers.get("X-Needlecare-Notification", "") for m in list_mail(stack.mail_dir, limit=1_000_000)}
        if len(wanted) == len(session_ids) and wanted <= got:
            return time.monotonic()
        if dead := stack.dead():
            raise RuntimeError(f"{dead[0].name} exited; logs in {stack.log_dir}")
        time.sleep(0.5)
    raise RuntimeError(f"not all sent within {timeout:.0f} s; logs in {stack.log_dir}")


def _runs(stack: ProductionStack, since: str) -> list[dict[str, Any]]:
    """Flow runs started after ``since`` (ISO time): worker, deployment, parameters, messages claimed."""
    deployments = stack.api("POST", "/deployments/filter", {})
    assert isinstance(deployments, list)
    names = {d["id"]: d["name"] for d in deployments}
    body = {"flow_runs": {"start_time": {"after_": since}}, "limit": 200, "sort": "START_TIME_ASC"}
    runs = stack.api("POST", "/flow_runs/filter", body)
    assert isinstance(runs, list)
    table = []
    for run in runs:
        if run["state_type"] in ("SCHEDULED", "PENDING"):
            continue
        logs = stack.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200})
        assert isinstance(logs, list)
        worker = next((m.group(1) for log in logs if (m := WORKER_LINE.search(log["message"]))), "?")
        done = next((m.group(1) for log in logs if (m := DONE_LINE.search(log["message"]))), "{}")
        table.append(
            {
                "deployment": names.get(run["deployment_id"], "?"),
                "worker": worker,
                "helper": bool(run["parameters"].get("helper")),
                "claimed": int(ast.literal_eval(done).get("claimed", 0)),
            }
        )
    return table


def _pause_pool(stack: ProductionStack, paused: bool) -> None:
    stack.api("PATCH", f"/work_pools/{POOL}", {"is_paused": paused})


def _wait_idle(stack: ProductionStack, timeout: float = 120) -> None:
    active = {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}}, "limit": 1}
    deadline = time.monotonic() + timeout
    while stack.api("POST", "/flow_runs/filter", active) and time.monotonic() < deadline:
        time.sleep(1)


def measure(workers: int, burst: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"needlecare-bench-workers{workers}-"))
    root.chmod(0o755)
    try:
        with production_stack(root, workers=workers, web_workers=2, say=lambda _m: None) as stack:
            warm, _ = _post(stack, f"w{workers}-warm", 20)
            _wait_sent(stack, warm)
            time.sleep(25)  # let the warm-up's lingering run end, so the burst starts from idle
            since = datetime.now(UTC).isoformat()
            _pause_pool(stack, True)  # the burst waits in the outbox, so the drain is timed on its own
            ids, started = _post(stack, f"w{workers}", burst)
            posted = time.monotonic()
            _pause_pool(stack, False)
            resumed = time.monotonic()
            done = _wait_sent(stack, ids)
            _wait_idle(stack)  # each run's final "done" line is logged when it ends
            runs = [r for r in _runs(stack, since) if r["deployment"] in ("on-session-completed", "dispatch")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    seconds = done - resumed
    claims: Counter[str] = Counter()
    run_count: Counter[str] = Counter()
    for r in runs:
        claims[r["worker"]] += r["claimed"]
        run_count[r["worker"]] += 1
    return {
        "workers": workers,
        "burst": burst,
        "ingress_sessions_per_s": round(burst / (posted - started), 1),
        "seconds": round(seconds, 1),
        "emails_per_s": round(burst / seconds, 1),
        "runs_per_worker": dict(run_count),
        "claims_per_worker": dict(claims),
        "helper_runs": sum(1 for r in runs if r["helper"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=600, help="sessions in the measured burst (default 600)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    one = measure(1, args.burst)
    print(json.dumps(one), flush=True)
    two = measure(2, args.burst)
    print(json.dumps(two), flush=True)
    ratio = two["emails_per_s"] / one["emails_per_s"]
    print(f"\nburst of {args.burst}: one worker {one['emails_per_s']} emails/s, two workers {two['emails_per_s']}")
    print(f"two workers / one worker: {ratio:.2f}x throughput")
    print(f"two workers, messages claimed per worker: {two['claims_per_worker']} ({two['helper_runs']} helper runs)")
    if args.out:
        args.out.write_text(json.dumps({"one": one, "two": two, "ratio": round(ratio, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
