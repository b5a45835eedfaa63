"""Session-completed event → aftercare email: latency and burst throughput, product vs naive shape.

One run starts a private stack on free loopback ports in a temp dir (Prefect server, SMTP capture
in this process, web app, served flows), measures the product's shape (debounced trigger + a run
that drains and lingers, plus the scheduled catch-up), then stops the product's flows, deletes their
deployments and measures the naive shape (one flow run per event, bench/naive_flow.py) on the
same Prefect server, web app and database.

Per shape: one warm-up event, isolated ("cold") events each sent once no flow run is alive, a
steady trickle (one at a time, 0-1 s random gaps), and a burst from a thread pool. The product's warm
consumer (deployment ``warm-outbox``) is started once its deployments are registered and stays up: "no
flow run alive" means no run of the other deployments, so a cold event is one that arrives after idle.

    .venv/bin/python -m bench.event_to_email [--latency-events 50] [--burst 1000]
                                             [--naive-latency-events 20] [--naive-burst 100]

Everything is stopped in a ``finally`` block, also on Ctrl-C; every wait has a timeout.
"""

import argparse
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import httpx
import yaml

from bench import NAIVE_DEPLOYMENT
from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.core.signing import SIGNATURE_HEADER, sign
from needlecare.dev.mailcapture import start_capture
from needlecare.dev.stack import (
    BIN,
    Child,
    child_env,
    flows_command,
    prefect_server_command,
    spawn,
    stop_all,
    wait_http,
    web_command,
)
from needlecare.intake.sample import ensure_demo_clinic, sample_event

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
INGRESS_PATH = "/api/v1/events/session-completed"
DEPLOY_SPEC = ROOT / "deploy" / "prefect.yaml"
SESSION_COMPLETED = "needlecare.session.completed"
WARM_DEPLOYMENT = "warm-outbox"  # the product's long-lived consumer (flows/aftercare.py:outbox_consumer)
MAIL_POLL_SECONDS = 0.02
EVENT_TIMEOUT = 240.0  # one event → its email; covers a stall of Prefect's server (seen: ~2 min)
API_PATIENCE = 300.0  # how long one Prefect API call is retried


@dataclass(frozen=True)
class ProductSpec:
    """The product's deployments as deploy/prefect.yaml (the source of truth) declares them."""

    names: tuple[str, ...]
    triggered: str  # the one the session-completed event starts
    within_s: float


def product_spec(path: Path = DEPLOY_SPEC) -> ProductSpec:
    names: list[str] = []
    triggered: tuple[str, float] | None = None
    for item in yaml.safe_load(path.read_text())["deployments"]:
        names.append(item["name"])
        for trigger in item.get("triggers", []):
            if SESSION_COMPLETED in trigger.get("expect", []):
                triggered = (item["name"], float(trigger.get("within", 0)))
    if triggered is None:
        raise RuntimeError(f"no deployment in {path} is triggered by {SESSION_COMPLETED}")
    return ProductSpec(tuple(names), *triggered)


class PhaseFailed(RuntimeError):
    def __init__(self, phase: str, message: str) -> None:
        super().__init__(f"[{phase}] {message}")
        self.phase = phase


def _fail(phase: str, message: str) -> NoReturn:
    raise PhaseFailed(phase, message)


# --------------------------------------------------------------------------- stack


@dataclass
class Stack:
    data_dir: Path
    log_dir: Path
    env: dict[str, str]
    web_url: str
    api_url: str
    secret: str
    children: list[Child] = field(default_factory=list)

    def check_alive(self, phase: str) -> None:
        for c in self.children:
            if c.process.poll() is not None:
                _fail(
                    phase, f"{c.name} exited with code {c.process.returncode}; see {self.log_dir / (c.name + '.log')}"
                )


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (bound together, so the kernel cannot hand out one twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def configure_environment(data_dir: Path) -> tuple[Settings, dict[str, str]]:
    """Hermetic env for this process and every child: only our NEEDLECARE_* / PREFECT_* values
    (so a NEEDLECARE_PATIENT_EMAIL_URL in the caller's shell can never receive bench mail)."""
    for key in [k for k in os.environ if k.startswith(("NEEDLECARE_", "PREFECT_"))]:
        del os.environ[key]
    prefect_port, web_port, smtp_port = free_ports(3)
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    ours = {
        "NEEDLECARE_ENV": "development",
        "NEEDLECARE_DATA_DIR": str(data_dir),
        "NEEDLECARE_DATABASE_URL": f"sqlite:///{data_dir / 'needlecare.db'}",
        "NEEDLECARE_PREFECT_API_URL": api_url,
        "NEEDLECARE_PREFECT_PORT": str(prefect_port),
        "NEEDLECARE_WEB_PORT": str(web_port),
        "NEEDLECARE_PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "NEEDLECARE_SMTP_CAPTURE_HOST": "127.0.0.1",
        "NEEDLECARE_SMTP_CAPTURE_PORT": str(smtp_port),
        "NEEDLECARE_MAIL_CAPTURE_DIR": str(data_dir / "outbox"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    os.environ.update(ours)
    settings = Settings()
    env = child_env(settings)
    env.update(ours)
    return settings, env


def register_clinic(url: str) -> str:
    """The same demo clinic `make run` creates; returns its webhook secret."""
    return ensure_demo_clinic(Settings(database_url=url))


def start_core(stack: Stack, settings: Settings) -> None:
    """Prefect server and web app (the SMTP capture is started by the caller)."""
    phase = "startup"
    server = spawn(
        "prefect-server",
        prefect_server_command(settings.prefect_port),
        stack.env,
        stack.log_dir,
    )
    stack.children.append(server)
    try:
        wait_http(stack.api_url + "/health", 180, server)
    except RuntimeError as exc:
        _fail(phase, f"Prefect server: {exc}")
    web = spawn(
        "web",
        web_command("127.0.0.1", settings.web_port, access_log=False),
        stack.env,
        stack.log_dir,
    )
    stack.children.append(web)
    try:
        wait_http(stack.web_url + "/healthz", 60, web)
    except RuntimeError as exc:
        _fail(phase, f"web app: {exc}")


# --------------------------------------------------------------------------- Prefect API


def _started_since(after: datetime) -> dict[str, Any]:
    """A flow-run filter: really started since ``after`` (scheduled runs carry a future
    start_time, so they are excluded by state and by an upper bound of now)."""
    return {
        "start_time": {"after_": after.isoformat(), "before_": datetime.now(UTC).isoformat()},
        "state": {"type": {"not_any_": ["SCHEDULED"]}},
    }


class PrefectAPI:
    """The few REST calls the bench needs (keeps Prefect's client out of this process).

    Prefect's server on SQLite can stall for minutes (measured: ``database is locked`` after
    60 s busy waits), so a call is retried for up to API_PATIENCE before the bench gives up.
    """

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = ()) -> Any:
        deadline = time.monotonic() + API_PATIENCE
        while True:
            try:
                r = self.http.request(method, path, json=body)
                if r.status_code in ok:
                    return None
                if r.status_code < 500:
                    r.raise_for_status()
                    return r.json() if r.content else None
                problem = f"HTTP {r.status_code}"
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            if time.monotonic() > deadline:
                _fail("Prefect API", f"{method} {path} kept failing ({problem}) for {API_PATIENCE:.0f} s")
            print(f"  (Prefect API {method} {path}: {problem}; retrying)", flush=True)
            time.sleep(2)

    def start_run(self, deployment_id: str, parameters: dict[str, Any], phase: str, timeout: float = 120) -> str:
        """Create a run of the deployment now and wait until it is running; returns its id."""
        run = self._call("POST", f"/deployments/{deployment_id}/create_flow_run", {"parameters": parameters})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._call("GET", f"/flow_runs/{run['id']}")["state_type"] == "RUNNING":
                return str(run["id"])
            time.sleep(0.5)
        _fail(phase, f"the run of {deployment_id} did not start within {timeout:.0f} s")

    def deployments(self, names: Iterable[str]) -> dict[str, str]:
        body = {"deployments": {"name": {"any_": list(names)}}}
        return {d["name"]: d["id"] for d in self._call("POST", "deployments/filter", body)}

    def has_trigger(self, deployment_id: str) -> bool:
        return bool(self._call("GET", f"automations/related-to/prefect.deployment.{deployment_id}"))

    def count_runs(
        self, deployment_ids: Iterable[str], *, states: list[str] | None = None, started_after: datetime | None = None
    ) -> int:
        runs: dict[str, Any] = {"deployment_id": {"any_": list(deployment_ids)}}
        if started_after:
            runs.update(_started_since(started_after))
        if states:
            runs["state"] = {"type": {"any_": states}}
        return int(self._call("POST", "flow_runs/count", {"flow_runs": runs}))

    def runs(self, deployment_ids: dict[str, str], started_after: datetime) -> list[dict[str, Any]]:
        """Flow runs started since ``started_after``, with their timings (for the JSON)."""
        names = {v: k for k, v in deployment_ids.items()}
        body = {
            "flow_runs": {"deployment_id": {"any_": list(names)}, **_started_since(started_after)},
            "sort": "START_TIME_ASC",
            "limit": 200,
        }
        return [
            {
                "deployment": names.get(run["deployment_id"]),
                "name": run["name"],
                "state": run["state_type"],
                "created": run["created"],
                "start_time": run["start_time"],
                "end_time": run["end_time"],
                "total_run_time_s": run["total_run_time"],
            }
            for run in self._call("POST", "flow_runs/filter", body)
        ]

    def intervals(self, deployment_ids: dict[str, str]) -> dict[str, float]:
        """The interval schedules the served deployments really have (serve may override the yaml)."""
        found: dict[str, float] = {}
        for name, deployment_id in deployment_ids.items():
            for item in self._call("GET", f"deployments/{deployment_id}").get("schedules") or []:
                interval = (item.get("schedule") or {}).get("interval")
                if interval:
                    found[name] = float(interval)
        return found

    def delete_deployment(self, deployment_id: str) -> None:
        """Its trigger automations first (Prefect keeps them otherwise), then the deployment."""
        self._call("DELETE", f"automations/owned-by/prefect.deployment.{deployment_id}")
        self._call("DELETE", f"deployments/{deployment_id}", ok=(404,))


class StallMonitor(threading.Thread):
    """Probes the Prefect API with a cheap read every second and records how long each took, so the
    report can say whether (and when) Prefect's server stalled while we measured."""

    def __init__(self, api_url: str) -> None:
        super().__init__(name="prefect-stall-monitor", daemon=True)
        self.url = api_url.rstrip("/") + "/flow_runs/count"
        self.stopping = threading.Event()
        self.probes: list[tuple[float, float, bool]] = []  # (epoch start, seconds, answered)

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stopping.is_set():
                t0, m0 = time.time(), time.monotonic()
                try:
                    answered = http.post(self.url, json={}).status_code < 500
                except httpx.HTTPError:
                    answered = False
                self.probes.append((t0, time.monotonic() - m0, answered))
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)

    def stalls(self, slower_than: float = 2.0) -> list[dict[str, Any]]:
        """Consecutive slow (> ``slower_than`` s) or failed probes, merged into intervals."""
        merged: list[list[float]] = []  # [start, end, failed probes]
        for t0, took, answered in self.probes:
            if took < slower_than and answered:
                continue
            if merged and t0 - merged[-1][1] < 2.5:
                merged[-1][1] = t0 + took
                merged[-1][2] += 0 if answered else 1
            else:
                merged.append([t0, t0 + took, 0 if answered else 1])
        return [
            {
                "at": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
                "seconds": round(end - start, 1),
                "failed_probes": int(failed),
            }
            for start, end, failed in merged
        ]


def wait_deployments(
    stack: Stack, api: PrefectAPI, names: tuple[str, ...], triggered: set[str], phase: str, timeout: float = 120
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive(phase)
        found = api.deployments(names)
        if len(found) == len(names) and all(api.has_trigger(found[n]) for n in triggered):
            time.sleep(2)  # let the server's trigger service load the new automation
            return found
        time.sleep(0.5)
    _fail(phase, f"deployments {', '.join(names)} (with triggers) not registered within {timeout:.0f} s")


def wait_idle(stack: Stack, api: PrefectAPI, deployment_ids: list[str], phase: str, timeout: float = 300) -> None:
    """No flow run of these deployments pending or running, twice in a row one second apart."""
    deadline = time.monotonic() + timeout
    zeros = 0
    while time.monotonic() < deadline:
        stack.check_alive(phase)
        busy = api.count_runs(deployment_ids, states=["PENDING", "RUNNING"])
        zeros = zeros + 1 if busy == 0 else 0
        if zeros >= 2:
            return
        time.sleep(1)
    _fail(phase, f"flow runs still running after {timeout:.0f} s")


# --------------------------------------------------------------------------- mail and events


class Mailbox:
    """Watches the capture dir; arrival time is the capture's own stamp (ns, in the file name)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: set[str] = set()

    def _names(self) -> set[str]:
        with os.scandir(self.directory) as entries:
            return {e.name for e in entries if e.name.endswith(".eml")}

    def wait_new(
        self, count: int, timeout: float, phase: str, stack: Stack, *, partial_ok: bool = False
    ) -> list[float]:
        """Wait for ``count`` new messages; their arrival times (epoch seconds), sorted. With
        ``partial_ok``, a timeout returns what arrived instead of failing."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while True:
            new = self._names() - self.seen
            if len(new) >= count:
                self.seen |= new
                return sorted(int(name.split("-", 1)[0]) / 1e9 for name in new)
            now = time.monotonic()
            if now > deadline:
                if partial_ok:
                    self.seen |= new
                    return sorted(int(name.split("-", 1)[0]) / 1e9 for name in new)
                _fail(phase, f"only {len(new)} of {count} emails arrived within {timeout:.0f} s")
            if now >= next_check:
                stack.check_alive(phase)
                next_check = now + 1
            time.sleep(MAIL_POLL_SECONDS)


@dataclass
class EventFactory:
    secret: str
    run_token: str = field(default_factory=lambda: secrets.token_hex(3).upper())
    counter: int = 0

    def next(self, tag: str) -> tuple[bytes, dict[str, str]]:
        """A signed body: a fresh session, and a fresh patient (a burst is many patients)."""
        self.counter += 1
        ref = f"{tag.replace(' ', '-')}-{self.run_token}-{self.counter:05d}"
        event = sample_event(external_session_id=f"S-{ref}")
        event["patient"]["external_id"] = f"PT-{ref}"
        body = json.dumps(event).encode()
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)}


def post(http: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> int:
    try:
        return http.post(url, content=body, headers=headers).status_code
    except httpx.HTTPError:
        return -1


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --------------------------------------------------------------------------- measurements


@dataclass
class Sent:
    """Events sent one at a time: when each was accepted (202) and its 202 → email latency."""

    accepted_at: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def send_one_by_one(
    stack: Stack,
    api: PrefectAPI,
    ids: list[str],
    mailbox: Mailbox,
    events: EventFactory,
    n: int,
    phase: str,
    *,
    cold: bool,
    rng: random.Random | None = None,
) -> Sent:
    """Each event once the previous email arrived, then either after a 0-1 s random gap (a steady
    trickle) or, with ``cold``, once no flow run is alive any more (an isolated event)."""
    sent = Sent()
    url = stack.web_url + INGRESS_PATH
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            if cold:
                wait_idle(stack, api, ids, f"{phase}, waiting for idle before event {i + 1}")
            elif i and rng is not None:
                time.sleep(rng.uniform(0.0, 1.0))
            body, headers = events.next(phase)
            response = http.post(url, content=body, headers=headers)
            t_202 = time.time()
            if response.status_code != 202:
                _fail(phase, f"event {i + 1} answered {response.status_code}: {response.text[:300]}")
            arrived = mailbox.wait_new(1, EVENT_TIMEOUT, f"{phase}, event {i + 1}/{n}", stack)
            sent.accepted_at.append(t_202)
            sent.latencies.append(arrived[0] - t_202)
            print(f"  {phase} {i + 1}/{n}: {sent.latencies[-1]:.3f} s", flush=True)
    return sent


def summarise(sent: Sent) -> dict[str, Any]:
    v = sent.latencies
    return {
        "events": len(v),
        "p50_s": percentile(v, 0.50),
        "p95_s": percentile(v, 0.95),
        "max_s": max(v),
        "mean_s": sum(v) / len(v),
        "latencies_s": [round(x, 4) for x in v],
        "accepted_at_epoch": [round(x, 3) for x in sent.accepted_at],
    }


def cold_breakdown(sent: Sent, runs: list[dict[str, Any]], triggered: str) -> dict[str, Any]:
    """Where an isolated event's time goes: 202 → flow run created → flow run Running → email.

    The run is the triggered deployment's first run created after the event was accepted.
    """
    mine = sorted(
        (datetime.fromisoformat(r["created"]).timestamp(), datetime.fromisoformat(r["start_time"]).timestamp())
        for r in runs
        if r["deployment"] == triggered and r["start_time"]
    )
    to_created: list[float] = []
    to_running: list[float] = []
    for t0 in sent.accepted_at:
        run = next(((c, s) for c, s in mine if c >= t0 - 1.0), None)
        if run is not None:
            to_created.append(run[0] - t0)
            to_running.append(run[1] - t0)
    return {
        "to_run_created_p50_s": percentile(to_created, 0.5) if to_created else None,
        "to_run_running_p50_s": percentile(to_running, 0.5) if to_running else None,
        "to_run_created_s": [round(x, 3) for x in to_created],
        "to_run_running_s": [round(x, 3) for x in to_running],
    }


def measure_burst(
    stack: Stack, mailbox: Mailbox, events: EventFactory, n: int, workers: int, timeout: float, phase: str
) -> dict[str, Any]:
    """All posts at once from a thread pool; first POST → last email."""
    prepared = [events.next(phase) for _ in range(n)]
    url = stack.web_url + INGRESS_PATH
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(timeout=60, limits=limits) as http:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="burst")
        try:
            t0 = time.time()
            futures = [pool.submit(post, http, url, body, headers) for body, headers in prepared]
            statuses = [f.result(timeout=max(1.0, t0 + timeout - time.time())) for f in futures]
            t_posted = time.time()
        except TimeoutError:
            _fail(phase, f"the {n} POSTs did not finish within {timeout:.0f} s")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    accepted = statuses.count(202)
    others: dict[str, int] = {}
    for s in statuses:
        if s != 202:
            others[str(s)] = others.get(str(s), 0) + 1
    if others:
        print(f"  {phase}: non-202 answers {others} (-1 = connection error)", flush=True)
    print(f"  {phase}: {accepted} accepted in {t_posted - t0:.2f} s; waiting for the emails…", flush=True)
    arrived = mailbox.wait_new(accepted, max(1.0, t0 + timeout - time.time()), phase, stack, partial_ok=True)
    if not arrived:
        _fail(phase, f"no email arrived within {timeout:.0f} s of the first POST")
    if len(arrived) < accepted:
        print(f"  {phase}: INCOMPLETE, {len(arrived)} of {accepted} emails within {timeout:.0f} s", flush=True)
    e2e = arrived[-1] - t0
    return {
        "complete": len(arrived) == accepted,
        "emails": len(arrived),
        "events": n,
        "workers": workers,
        "accepted": accepted,
        "other_statuses": others,
        "posts_s": t_posted - t0,
        "accepted_per_s": accepted / (t_posted - t0),
        "first_email_s": arrived[0] - t0,
        "last_email_s": e2e,
        "emails_per_s": len(arrived) / e2e,
        # the delivery rate once mail flows, without the time to the first email
        "emails_per_s_after_first": (len(arrived) - 1) / (arrived[-1] - arrived[0]) if len(arrived) > 1 else None,
    }


# --------------------------------------------------------------------------- phases


def run_shape(
    stack: Stack,
    api: PrefectAPI,
    mailbox: Mailbox,
    events: EventFactory,
    deployment_ids: dict[str, str],
    triggered: str,
    shape: str,
    *,
    cold_events: int,
    latency_events: int,
    burst: int,
    workers: int,
    burst_timeout: float,
    rng: random.Random,
) -> dict[str, Any]:
    ids = [i for name, i in deployment_ids.items() if name != WARM_DEPLOYMENT]  # "idle": the warm run stays up
    result: dict[str, Any] = {"deployments": sorted(deployment_ids)}
    shape_start = datetime.now(UTC)
    timeline = result["timeline"] = {"warm-up": shape_start.isoformat(timespec="seconds")}

    def mark(name: str) -> None:
        timeline[name] = datetime.now(UTC).isoformat(timespec="seconds")

    print(f"\n[{shape} warm-up] one event (first connections, first flow run)", flush=True)
    warm = send_one_by_one(stack, api, ids, mailbox, events, 1, f"{shape} warm-up", cold=False)
    result["warmup_s"] = warm.latencies[0]

    mark("cold")
    print(f"\n[{shape} cold] {cold_events} isolated events, each once no flow run is alive", flush=True)
    cold = send_one_by_one(stack, api, ids, mailbox, events, cold_events, f"{shape} cold", cold=True)
    result["cold"] = summarise(cold)

    print(f"\n[{shape} trickle] {latency_events} events, one at a time, 0-1 s gaps", flush=True)
    mark("trickle")
    start = datetime.now(UTC)
    trickle = send_one_by_one(stack, api, ids, mailbox, events, latency_events, f"{shape} trickle", cold=False, rng=rng)
    result["trickle"] = summarise(trickle)
    time.sleep(1)
    result["trickle"]["flow_runs_started"] = api.count_runs(ids, started_after=start)

    print(f"\n[{shape} burst] waiting until no flow run is alive (the burst starts cold)…", flush=True)
    wait_idle(stack, api, ids, f"{shape} burst (waiting for idle)")
    mark("burst")
    start = datetime.now(UTC)
    print(f"[{shape} burst] {burst} events from {workers} threads", flush=True)
    result["burst"] = measure_burst(stack, mailbox, events, burst, workers, burst_timeout, f"{shape} burst")
    time.sleep(1)
    result["burst"]["flow_runs_started"] = api.count_runs(ids, started_after=start)
    result["burst"]["started_at"] = start.isoformat()
    mark("end")

    result["flow_runs"] = api.runs(deployment_ids, shape_start)
    result["cold"]["breakdown"] = cold_breakdown(cold, result["flow_runs"], triggered)
    result["flow_runs_by_deployment"] = {
        name: api.count_runs([i], started_after=shape_start) for name, i in deployment_ids.items()
    }
    return result


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    os.chdir(ROOT)  # served deployments resolve their entrypoints from the working directory
    spec = product_spec()
    settings, env = configure_environment(data_dir)
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    mail_dir = settings.resolved_mail_capture_dir
    db_url = env["NEEDLECARE_DATABASE_URL"]
    database.upgrade(db_url)
    stack = Stack(
        data_dir=data_dir,
        log_dir=log_dir,
        env=env,
        web_url=f"http://127.0.0.1:{settings.web_port}",
        api_url=settings.prefect_api_url.rstrip("/"),
        secret=register_clinic(db_url),
    )
    rng = random.Random(args.seed)
    events = EventFactory(stack.secret)
    mailbox = Mailbox(mail_dir)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "prefect": version("prefect"),
            "sqlalchemy": version("sqlalchemy"),
            "platform": platform.platform(),
        },
        "settings": {
            "drain_linger_seconds": settings.drain_linger_seconds,
            "drain_poll_seconds": settings.drain_poll_seconds,
            "runner_poll_frequency_s": 1,
            "product_deployments": list(spec.names),
            "trigger_within_s": spec.within_s,
            "app_database": "sqlite",
            "prefect_database": args.prefect_db,
        },
        "parameters": {k: v for k, v in vars(args).items() if k != "keep"},
        "load_average_at_start": os.getloadavg(),
    }
    capture = start_capture(mail_dir, "127.0.0.1", settings.smtp_capture_port)
    api = PrefectAPI(stack.api_url)
    monitor = StallMonitor(stack.api_url)
    pg: Any = None
    try:
        if args.prefect_db == "postgres":
            from tests.pg import start_cluster  # the test suite's throwaway cluster (socket only, fsync off)

            pg = start_cluster(free_ports(1)[0])
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
                f"postgresql+asyncpg://postgres@/{pg.create_database()}?host={pg.data_dir}&port={pg.port}"
            )
        print(f"Starting the stack in {data_dir} (Prefect server first start ~30 s)…", flush=True)
        start_core(stack, settings)
        monitor.start()
        flows = spawn("flows", flows_command(), env, log_dir)
        stack.children.append(flows)
        product_ids = wait_deployments(stack, api, spec.names, {spec.triggered}, "product startup")
        results["settings"]["schedule_intervals_s"] = api.intervals(product_ids)
        if WARM_DEPLOYMENT in product_ids:  # its schedule would start one within 300 s; the bench wants it now
            print(f"Starting a {WARM_DEPLOYMENT} run (the warm consumer)…", flush=True)
            api.start_run(product_ids[WARM_DEPLOYMENT], {"seconds": 7200}, "product startup")
            results["settings"]["warm_consumer"] = True
        results["product"] = run_shape(
            stack,
            api,
            mailbox,
            events,
            product_ids,
            spec.triggered,
            "product",
            cold_events=args.cold_events,
            latency_events=args.latency_events,
            burst=args.burst,
            workers=args.workers,
            burst_timeout=120 + 0.5 * args.burst,
            rng=rng,
        )

        print("\n[naive] stopping the product's flows and deleting their deployments…", flush=True)
        stop_all([flows])
        stack.children.remove(flows)
        for deployment_id in product_ids.values():
            api.delete_deployment(deployment_id)
        naive = spawn("naive-flows", [str(BIN / "python"), "-m", "bench.naive_serve"], env, log_dir)
        stack.children.append(naive)
        naive_ids = wait_deployments(stack, api, (NAIVE_DEPLOYMENT,), {NAIVE_DEPLOYMENT}, "naive startup")
        results["naive"] = run_shape(
            stack,
            api,
            mailbox,
            events,
            naive_ids,
            NAIVE_DEPLOYMENT,
            "naive",
            cold_events=args.cold_events,
            latency_events=args.naive_latency_events,
            burst=args.naive_burst,
            workers=args.workers,
            burst_timeout=120 + 6 * args.naive_burst,
            rng=rng,
        )
        results["load_average_at_end"] = os.getloadavg()
        results["log_findings"] = scan_logs(log_dir)
        return results
    finally:
        # Nothing may be left behind, also on a second Ctrl-C while stopping.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if monitor.is_alive():  # before the server goes: its shutdown is not a stall
            monitor.stop()
        print("Stopping every process…", flush=True)
        stop_all(stack.children)
        if pg is not None:
            pg.stop()
        capture.stop()
        api.close()
        results["prefect_api_stalls"] = monitor.stalls()
        if results["prefect_api_stalls"]:
            print(f"Prefect API stalls (a read took > 2 s or failed): {results['prefect_api_stalls']}", flush=True)


def scan_logs(log_dir: Path) -> dict[str, dict[str, int]]:
    """Counts of a few tell-tale strings per log (what failed quietly while we measured)."""
    needles = ("Traceback", "database is locked", "Crashed", "Failed", "ERROR")
    found: dict[str, dict[str, int]] = {}
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        counts = {n: text.count(n) for n in needles if n in text}
        if counts:
            found[path.name] = counts
    return found


# --------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


Row = tuple[str, float | int | None, float | int | None, float | None, str]


def build_table(results: dict[str, Any]) -> tuple[str, dict[str, float | None]]:
    p, n = results["product"], results["naive"]
    ratios: dict[str, float | None] = {}

    def compared(label: str, pv: float | None, nv: float | None, key: str, naive_over_product: bool) -> Row:
        r = ratio(nv, pv) if naive_over_product else ratio(pv, nv)
        how = "naive/product" if naive_over_product else "product/naive"
        ratios[f"{key}_{how.replace('/', '_over_')}"] = r
        return (label, pv, nv, r, how)

    pc, nc = p["cold"], n["cold"]
    rows: list[Row] = [
        ("stack's first event (warm-up), s", p["warmup_s"], n["warmup_s"], None, ""),
        compared(f"isolated event (cold, n={pc['events']}) p50, s", pc["p50_s"], nc["p50_s"], "cold_p50", True),
        (
            "  of which 202 → flow run created, s",
            pc["breakdown"]["to_run_created_p50_s"],
            nc["breakdown"]["to_run_created_p50_s"],
            None,
            "",
        ),
        (
            "  of which 202 → flow run Running, s",
            pc["breakdown"]["to_run_running_p50_s"],
            nc["breakdown"]["to_run_running_p50_s"],
            None,
            "",
        ),
        ("trickle events (0-1 s gaps)", p["trickle"]["events"], n["trickle"]["events"], None, ""),
    ]
    for key in ("p50_s", "p95_s", "max_s"):
        rows.append(
            compared(
                f"trickle latency {key.removesuffix('_s')}, s",
                p["trickle"][key],
                n["trickle"][key],
                f"trickle_{key.removesuffix('_s')}",
                True,
            )
        )
    rows += [
        ("flow runs during trickle", p["trickle"]["flow_runs_started"], n["trickle"]["flow_runs_started"], None, ""),
        ("burst size (events)", p["burst"]["events"], n["burst"]["events"], None, ""),
        compared(
            "burst: POSTs accepted/s",
            p["burst"]["accepted_per_s"],
            n["burst"]["accepted_per_s"],
            "burst_accepted_per_s",
            False,
        ),
        compared(
            "burst: end-to-end emails/s",
            p["burst"]["emails_per_s"],
            n["burst"]["emails_per_s"],
            "burst_emails_per_s",
            False,
        ),
        compared(
            "burst: emails/s once mail flows",
            p["burst"]["emails_per_s_after_first"],
            n["burst"]["emails_per_s_after_first"],
            "burst_emails_per_s_after_first",
            False,
        ),
        ("burst: first POST → first email, s", p["burst"]["first_email_s"], n["burst"]["first_email_s"], None, ""),
        ("burst: first POST → last email, s", p["burst"]["last_email_s"], n["burst"]["last_email_s"], None, ""),
        ("flow runs during burst", p["burst"]["flow_runs_started"], n["burst"]["flow_runs_started"], None, ""),
        ("burst: emails arrived", p["burst"]["emails"], n["burst"]["emails"], None, ""),
    ]
    m, st = results["machine"], results["settings"]
    lines = [
        f"event → email benchmark, {results['date']}",
        f"cores {m['cpu_count']} · python {m['python']} · prefect {m['prefect']} · "
        f"sqlalchemy {m['sqlalchemy']} · app DB SQLite · Prefect server DB {st['prefect_database']} · loopback only",
        f"load average (1 min) at start {results['load_average_at_start'][0]:.2f}, "
        f"at end {results['load_average_at_end'][0]:.2f}",
        f"product: debounced trigger (within {st['trigger_within_s']:g} s) + drain lingering "
        f"{st['drain_linger_seconds']:g} s + "
        + ", ".join(f"{name} every {sec:g} s" for name, sec in st.get("schedule_intervals_s", {}).items()),
        "naive: one flow run per event (bench/naive_flow.py)",
        "",
        f"{'figure':<40}{'product':>10}{'naive':>10}   ratio",
        "-" * 84,
    ]
    for label, pv, nv, r, how in rows:
        rs = f"{r:7.1f}x {how}" if r is not None else ""
        lines.append(f"{label:<40}{_fmt(pv):>10}{_fmt(nv):>10} {rs}".rstrip())
    lines.append(
        f"flow runs by deployment: product {p['flow_runs_by_deployment']}, naive {n['flow_runs_by_deployment']}"
    )
    stalls = results.get("prefect_api_stalls") or []
    longest = max((x["seconds"] for x in stalls), default=0.0)
    lines.append(f"Prefect API stalls (a read > 2 s or failing): {len(stalls)}, longest {longest:.0f} s")
    return "\n".join(lines), ratios


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def write_results(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    variant = (
        ""
        if results["settings"]["prefect_database"] == "sqlite"
        else f"-prefect-{results['settings']['prefect_database']}"
    )
    path = RESULTS_DIR / f"event_to_email-{datetime.now(UTC):%Y-%m-%d}{variant}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.event_to_email", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--latency-events", type=int, default=50, help="product: trickle events, one at a time, 0-1 s gaps (default 50)"
    )
    parser.add_argument("--burst", type=int, default=1000, help="product: burst size (default 1000)")
    parser.add_argument(
        "--cold-events",
        type=int,
        default=3,
        help="both shapes: isolated events, each sent once no flow run is alive (default 3)",
    )
    parser.add_argument("--naive-latency-events", type=int, default=20, help="naive: trickle events (default 20)")
    parser.add_argument(
        "--naive-burst", type=int, default=100, help="naive: burst size (default 100; ~0.7 runs/s on 2 idle cores)"
    )
    parser.add_argument("--workers", type=int, default=8, help="burst POST threads (default 8)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random gaps (default 1)")
    parser.add_argument(
        "--prefect-db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="database of the Prefect server: sqlite (as `make run`, default) or a throwaway PostgreSQL cluster "
        "(needs the PostgreSQL server binaries, as `make test`)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    for name in ("latency_events", "burst", "cold_events", "naive_latency_events", "naive_burst", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    data_dir = Path(tempfile.mkdtemp(prefix="needlecare-bench-")).resolve()
    keep = args.keep
    started = time.monotonic()
    try:
        results = run(args, data_dir)
    except PhaseFailed as exc:
        keep = True
        print(f"\nFAILED {exc}\nEverything is stopped; logs kept in {data_dir / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted; everything is stopped.", file=sys.stderr)
        return 130
    except Exception:
        keep = True
        print(f"\nFAILED; everything is stopped; logs kept in {data_dir / 'logs'}", file=sys.stderr)
        raise
    finally:
        if keep:
            print(f"Temp dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    table, ratios = build_table(results)
    results["ratios"] = ratios
    results["table"] = table.splitlines()
    print("\n" + table)
    if results["log_findings"]:
        print(f"\nlog lines worth a look (counts per log): {results['log_findings']}")
    print(f"\ntotal wall time {results['wall_seconds']:.0f} s")
    print(f"results: {write_results(results)}")
    incomplete = [shape for shape in ("product", "naive") if not results[shape]["burst"]["complete"]]
    if incomplete:
        print(f"FAILED: the {' and '.join(incomplete)} burst did not deliver every email in time", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
