"""The production stack: an isolated event's latency with the warm consumer up, and burst throughput with one
Prefect worker and with two.

For each worker count, deploy/production.py starts its whole stack (PostgreSQL, Redis, the Prefect API and
services apart, the web app with two uvicorn workers, the local SMTP capture) in a temp dir; a warm-up of 20
sessions is sent. Then:

* cold: a run of the ``warm-outbox`` deployment is started (its schedule would start one within 300 s) and,
  once it is running, ``--cold-events`` single sessions are posted ``--cold-gap`` seconds apart (nothing else
  is sent in between): seconds from each 202 to its email's arrival in the capture, p50 / p95 / max;
* burst: ``--burst`` signed sessions from ``--posters`` threads with everything running (no paused pool):
  the ingress rate, and emails per second end to end (first POST to the last email of the burst); which
  worker ran the flow runs and how many messages each claimed (from the runs' own "done" log lines).

The ratio is two workers against one, both runs in this process on this machine; the 1-minute load average
is recorded before and after each phase (the machine is shared).

    .venv/bin/python -m bench.workers [--burst 600] [--cold-events 20] [--out bench/results/workers-DATE.json]
"""

import argparse
import ast
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, select

from deploy.production import ProductionStack, production_stack
from models import Notification
from needlecare.core import db as database
from needlecare.core.signing import sign
from needlecare.dev.mailcapture import list_mail
from needlecare.intake.sample import sample_event

WORKER_LINE = re.compile(r"Worker '([^']+)' submitting flow run")
DONE_LINE = re.compile(r"(?:done|so far): (\{.*\})")


def _post(stack: ProductionStack, tag: str, count: int, senders: int = 4) -> tuple[list[int], float]:
    """Post ``count`` signed sessions from ``senders`` threads, each with its own keep-alive ``httpx.Client``.

    A new client per request (``httpx.post``) costs ~18 ms of the bench's CPU (its SSL context) under one GIL:
    posting that way measured 13.6-14.4 POSTs/s on 2026-12-02, the bench's limit rather than the web app's."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if getattr(local, "client", None) is None:
            local.client = httpx.Client(timeout=30)
            clients.append(local.client)
        return local.client

    def one(n: int) -> int:
        event = sample_event(external_session_id=f"B-{tag}-{n:05d}")
        event["patient"].update(external_id=f"PT-B-{tag}-{n}", email=f"b{n}.{tag}@example.org")
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", "X-Needlecare-Signature": sign(body, stack.clinic_secret)}
        url = f"{stack.web_url}/api/v1/events/session-completed"
        for _ in range(60):
            response = client().post(url, content=body, headers=headers)
            if response.status_code == 202:
                return int(response.json()["session_id"])
            time.sleep(1)
        raise RuntimeError(f"not accepted: {response.status_code} {response.text[:200]}")

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(senders) as pool:
            ids = list(pool.map(one, range(count)))
    finally:
        for c in clients:
            c.close()
    return ids, started


def _emails(stack: ProductionStack) -> dict[str, float]:
    """Notification id → arrival time (the .eml file's name starts with its time_ns) of every captured email."""
    assert stack.mail_dir is not None
    return {
        m.headers.get("X-Needlecare-Notification", ""): m.received_at.timestamp()
        for m in list_mail(stack.mail_dir, limit=1_000_000)
    }


def _wait_sent(stack: ProductionStack, session_ids: list[int], timeout: float = 900) -> float:
    """Wall-clock time (time.time) the last aftercare email of these sessions arrived."""
    engine = database.get_engine(stack.env["NEEDLECARE_DATABASE_URL"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as db:
            rows = db.exec(select(Notification).where(Notification.session_id.in_(session_ids))).all()  # type: ignore[union-attr]
        wanted = {str(n.id) for n in rows if n.kind == "aftercare"}
        got = _emails(stack)
        if len(wanted) == len(session_ids) and wanted <= set(got):
            return max(got[w] for w in wanted)
        if dead := stack.dead():
            raise RuntimeError(f"{dead[0].name} exited; logs in {stack.log_dir}")
        time.sleep(0.05)
    raise RuntimeError(f"not all sent within {timeout:.0f} s; logs in {stack.log_dir}")


def _start_consumer(stack: ProductionStack, seconds: float) -> str:
    """Start a warm-outbox run now and wait until it is running; returns its id."""
    found = stack.api("POST", "/deployments/filter", {"deployments": {"name": {"any_": ["warm-outbox"]}}})
    assert isinstance(found, list) and len(found) == 1, "deploy/prefect.yaml has a warm-outbox deployment"
    deployment: dict[str, Any] = found[0]
    run = stack.api("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"seconds": seconds}})
    assert isinstance(run, dict)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = stack.api("GET", f"/flow_runs/{run['id']}")
        assert isinstance(state, dict)
        if state["state_type"] == "RUNNING":
            return str(run["id"])
        time.sleep(0.5)
    raise RuntimeError(f"the warm-outbox run did not start within 120 s; logs in {stack.log_dir}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cold(stack: ProductionStack, workers: int, count: int, gap: float) -> dict[str, Any]:
    latencies = []
    load_before = _load()
    for n in range(count):
        time.sleep(gap)
        [sid], _ = _post(stack, f"w{workers}-cold{n}", 1, senders=1)
        accepted = time.time()
        latencies.append(_wait_sent(stack, [sid], timeout=120) - accepted)
    return {
        "events": count,
        "gap_seconds": gap,
        "latencies_s": [round(x, 3) for x in latencies],
        "p50_s": round(_percentile(latencies, 0.5), 3),
        "p95_s": round(_percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
        "load_1min_before": load_before,
        "load_1min_after": _load(),
    }


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
        done = next((m.group(1) for log in reversed(logs) if (m := DONE_LINE.search(log["message"]))), "{}")
        table.append(
            {
                "deployment": names.get(run["deployment_id"], "?"),
                "worker": worker,
                "helper": bool(run["parameters"].get("helper")),
                "claimed": int(ast.literal_eval(done).get("claimed", 0)),
            }
        )
    return table


def measure(workers: int, burst: int, cold_events: int, cold_gap: float, posters: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"needlecare-bench-workers{workers}-"))
    root.chmod(0o755)
    try:
        with production_stack(root, workers=workers, web_workers=2, say=lambda _m: None) as stack:
            since = datetime.now(UTC).isoformat()
            warm, _ = _post(stack, f"w{workers}-warm", 20)
            _wait_sent(stack, warm)
            _start_consumer(stack, seconds=3600)
            cold = _cold(stack, workers, cold_events, cold_gap) if cold_events else None
            load_before = _load()
            first_post = time.time()
            ids, started = _post(stack, f"w{workers}", burst, senders=posters)
            posted = time.monotonic()
            last_email = _wait_sent(stack, ids)
            load_after = _load()
            time.sleep(7)  # the warm consumer logs its counts every 5 s
            runs = _runs(stack, since)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    seconds = last_email - first_post
    claims: Counter[str] = Counter()
    run_count: Counter[str] = Counter()
    by_deployment: Counter[str] = Counter()
    for r in runs:
        claims[r["worker"]] += r["claimed"]
        run_count[r["worker"]] += 1
        by_deployment[r["deployment"]] += r["claimed"]
    return {
        "workers": workers,
        "burst": burst,
        "posters": posters,
        "ingress_sessions_per_s": round(burst / (posted - started), 1),
        "seconds_first_post_to_last_email": round(seconds, 1),
        "emails_per_s": round(burst / seconds, 1),
        "runs_per_worker": dict(run_count),
        "claims_per_worker": dict(claims),
        "claims_by_deployment": dict(by_deployment),
        "helper_runs": sum(1 for r in runs if r["helper"]),
        "load_1min_before_burst": load_before,
        "load_1min_after_burst": load_after,
        "cold": cold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=600, help="sessions in the measured burst (default 600)")
    parser.add_argument("--posters", type=int, default=8, help="threads posting the burst (default 8)")
    parser.add_argument("--cold-events", type=int, default=20, help="isolated events (default 20; 0: none)")
    parser.add_argument("--cold-gap", type=float, default=5.0, help="seconds of idle before each (default 5)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    results = {}
    for workers in args.workers:
        results[workers] = measure(workers, args.burst, args.cold_events, args.cold_gap, args.posters)
        print(json.dumps(results[workers]), flush=True)
    for workers, r in results.items():
        cold = r["cold"] or {}
        print(
            f"{workers} worker(s): burst {r['emails_per_s']} emails/s end to end (ingress {r['ingress_sessions_per_s']}"
            f"/s), claims per worker {r['claims_per_worker']}; isolated event p50 {cold.get('p50_s')} s, p95"
            f" {cold.get('p95_s')} s, max {cold.get('max_s')} s; load {r['load_1min_before_burst']}"
            f"–{r['load_1min_after_burst']}"
        )
    ratio = None
    if 1 in results and 2 in results:
        ratio = round(results[2]["emails_per_s"] / results[1]["emails_per_s"], 2)
        print(f"two workers / one worker: {ratio}x throughput")
    if args.out:
        payload: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count()}
        payload |= {f"workers_{w}": r for w, r in results.items()} | {"ratio_two_over_one": ratio}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
