"""Session-completed event → aftercare email: latency and burst throughput, product vs naive shape.

One run starts a private stack on free loopback ports in a temp dir (Prefect server, SMTP capture
in this process, web app, served flows), measures the product's shape (debounced trigger + a run
that drains and lingers, plus the sweep), then stops the product's flows and measures the naive
shape (one flow run per event, bench/naive_flow.py) on the same server, web app and database.

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
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import httpx
from sqlmodel import Session

from bench import NAIVE_DEPLOYMENT
from models import ClinicCreate
from needlecare import db as database
from needlecare.clinics import add_clinic
from needlecare.devstack import BIN, Child, child_env, spawn, stop_all, wait_http
from needlecare.mailcapture import start_capture
from needlecare.sample import DEMO_CLINIC_ID, sample_event
from needlecare.settings import Settings
from needlecare.signing import SIGNATURE_HEADER, sign

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
INGRESS_PATH = "/api/v1/events/session-completed"
PRODUCT_TRIGGERED = "on-session-completed"
PRODUCT_DEPLOYMENTS = (PRODUCT_TRIGGERED, "sweep")
MAIL_POLL_SECONDS = 0.02
EVENT_TIMEOUT = 90.0  # one event → its email (a lost product event waits for the sweep, ≤ 30 s)


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
    mail_dir: Path
    children: list[Child] = field(default_factory=list)

    def child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    def check_alive(self, phase: str) -> None:
        for c in self.children:
            if c.process.poll() is not None:
                _fail(phase, f"{c.name} exited with code {c.process.returncode}; "
                      f"see {self.log_dir / (c.name + '.log')}")


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
    """Hermetic env for this process and every child: only our NEEDLECARE_* / PREFECT_* values."""
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
    with Session(database.get_engine(url)) as db:
        _, secret = add_clinic(db, ClinicCreate(
            id=DEMO_CLINIC_ID, name="Riverside Physio", email="front-desk@riverside.example",
            phone="+15550100200", timezone="America/New_York"), actor="bench")
    return secret


def start_core(stack: Stack, settings: Settings) -> None:
    """Prefect server and web app (the SMTP capture is started by the caller)."""
    phase = "startup"
    server = spawn("prefect-server", [str(BIN / "prefect"), "server", "start", "--host",
                                      "127.0.0.1", "--port", str(settings.prefect_port)],
                   stack.env, stack.log_dir)
    stack.children.append(server)
    try:
        wait_http(stack.api_url + "/health", 180, server)
    except RuntimeError as exc:
        _fail(phase, f"Prefect server: {exc}")
    web = spawn("web", [str(BIN / "python"), "-m", "uvicorn", "needlecare.web.app:app_from_env",
                        "--factory", "--host", "127.0.0.1", "--port", str(settings.web_port),
                        "--no-access-log"], stack.env, stack.log_dir)
    stack.children.append(web)
    try:
        wait_http(stack.web_url + "/healthz", 60, web)
    except RuntimeError as exc:
        _fail(phase, f"web app: {exc}")


# --------------------------------------------------------------------------- Prefect API


class PrefectAPI:
    """The few REST calls the bench needs (keeps Prefect's client out of this process)."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30)

    def close(self) -> None:
        self.http.close()

    def deployments(self, names: Iterable[str]) -> dict[str, str]:
        body = {"deployments": {"name": {"any_": list(names)}}}
        r = self.http.post("deployments/filter", json=body)
        r.raise_for_status()
        return {d["name"]: d["id"] for d in r.json()}

    def has_trigger(self, deployment_id: str) -> bool:
        r = self.http.get(f"automations/related-to/prefect.deployment.{deployment_id}")
        r.raise_for_status()
        return bool(r.json())

    def count_runs(self, deployment_ids: Iterable[str], *, states: list[str] | None = None,
                   started_after: datetime | None = None) -> int:
        runs: dict[str, Any] = {"deployment_id": {"any_": list(deployment_ids)}}
        if states:
            runs["state"] = {"type": {"any_": states}}
        if started_after:
            runs["start_time"] = {"after_": started_after.isoformat()}
        r = self.http.post("flow_runs/count", json={"flow_runs": runs})
        r.raise_for_status()
        return int(r.json())

    def runs(self, deployment_ids: dict[str, str], started_after: datetime) -> list[dict[str, Any]]:
        """Flow runs started since ``started_after``: timings, for the JSON."""
        names = {v: k for k, v in deployment_ids.items()}
        body = {"flow_runs": {"deployment_id": {"any_": list(names)},
                              "start_time": {"after_": started_after.isoformat()}},
                "sort": "START_TIME_ASC", "limit": 200}
        r = self.http.post("flow_runs/filter", json=body)
        r.raise_for_status()
        return [{"deployment": names.get(run["deployment_id"]), "name": run["name"],
                 "state": run["state_type"], "created": run["created"],
                 "start_time": run["start_time"], "end_time": run["end_time"],
                 "total_run_time_s": run["total_run_time"]} for run in r.json()]

    def delete_deployment(self, deployment_id: str) -> None:
        """Its trigger automations first (Prefect keeps them otherwise), then the deployment."""
        self.http.delete(f"automations/owned-by/prefect.deployment.{deployment_id}").raise_for_status()
        self.http.delete(f"deployments/{deployment_id}").raise_for_status()


def wait_deployments(stack: Stack, api: PrefectAPI, names: tuple[str, ...], triggered: set[str],
                     phase: str, timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive(phase)
        found = api.deployments(names)
        if len(found) == len(names) and all(api.has_trigger(found[n]) for n in triggered):
            time.sleep(2)  # let the server's trigger service load the new automation
            return found
        time.sleep(0.5)
    _fail(phase, f"deployments {', '.join(names)} (with triggers) not registered "
          f"within {timeout:.0f} s")


def wait_idle(stack: Stack, api: PrefectAPI, deployment_ids: list[str], phase: str,
              timeout: float = 120) -> None:
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

    def wait_new(self, count: int, timeout: float, phase: str, stack: Stack) -> list[float]:
        """Wait for ``count`` new messages; their arrival times (epoch seconds), sorted."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while True:
            new = self._names() - self.seen
            if len(new) >= count:
                self.seen |= new
                return sorted(int(name.split("-", 1)[0]) / 1e9 for name in new)
            now = time.monotonic()
            if now > deadline:
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


def measure_latency(stack: Stack, mailbox: Mailbox, events: EventFactory, n: int,
                    rng: random.Random, phase: str) -> dict[str, Any]:
    """One event at a time; next one after the previous email arrived plus a 0-1 s random gap."""
    latencies: list[float] = []
    accepted_at: list[float] = []
    url = stack.web_url + INGRESS_PATH
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            body, headers = events.next(phase)
            response = http.post(url, content=body, headers=headers)
            t_202 = time.time()
            accepted_at.append(t_202)
            if response.status_code != 202:
                _fail(phase, f"event {i + 1} answered {response.status_code}: "
                      f"{response.text[:300]}")
            arrived = mailbox.wait_new(1, EVENT_TIMEOUT, f"{phase}, event {i + 1}/{n}", stack)
            latencies.append(arrived[0] - t_202)
            print(f"  {phase} {i + 1}/{n}: {latencies[-1]:.3f} s", flush=True)
            if i < n - 1:
                time.sleep(rng.uniform(0.0, 1.0))
    steady = latencies[1:] or latencies
    return {
        "events": n,
        "first_event_s": latencies[0],
        "p50_s": percentile(steady, 0.50),
        "p95_s": percentile(steady, 0.95),
        "max_s": max(steady),
        "mean_s": sum(steady) / len(steady),
        "latencies_s": [round(x, 4) for x in latencies],
        "accepted_at_epoch": [round(x, 3) for x in accepted_at],
    }


def measure_burst(stack: Stack, mailbox: Mailbox, events: EventFactory, n: int, workers: int,
                  timeout: float, phase: str) -> dict[str, Any]:
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
    print(f"  {phase}: {accepted} accepted in {t_posted - t0:.2f} s; waiting for the emails…",
          flush=True)
    arrived = mailbox.wait_new(accepted, max(1.0, t0 + timeout - time.time()), phase, stack)
    e2e = arrived[-1] - t0
    return {
        "events": n,
        "workers": workers,
        "accepted": accepted,
        "other_statuses": others,
        "posts_s": t_posted - t0,
        "accepted_per_s": accepted / (t_posted - t0),
        "first_email_s": arrived[0] - t0,
        "last_email_s": e2e,
        "emails_per_s": accepted / e2e,
    }


# --------------------------------------------------------------------------- phases


def run_shape(stack: Stack, api: PrefectAPI, mailbox: Mailbox, events: EventFactory,
              deployment_ids: dict[str, str], shape: str, latency_events: int, burst: int,
              workers: int, burst_timeout: float, rng: random.Random) -> dict[str, Any]:
    ids = list(deployment_ids.values())
    result: dict[str, Any] = {"deployments": sorted(deployment_ids)}

    start = shape_start = datetime.now(UTC)
    print(f"\n[{shape} latency] {latency_events} events, one at a time, 0-1 s gaps", flush=True)
    result["latency"] = measure_latency(stack, mailbox, events, latency_events, rng,
                                        f"{shape} latency")
    time.sleep(1)
    result["latency"]["flow_runs_started"] = api.count_runs(ids, started_after=start)

    print(f"\n[{shape} burst] waiting until no flow run is alive (the burst starts cold)…",
          flush=True)
    wait_idle(stack, api, ids, f"{shape} burst (waiting for idle)")
    start = datetime.now(UTC)
    print(f"[{shape} burst] {burst} events from {workers} threads", flush=True)
    result["burst"] = measure_burst(stack, mailbox, events, burst, workers, burst_timeout,
                                    f"{shape} burst")
    time.sleep(1)
    result["burst"]["flow_runs_started"] = api.count_runs(ids, started_after=start)
    result["burst"]["started_at"] = start.isoformat()
    result["flow_runs"] = api.runs(deployment_ids, shape_start)
    result["flow_runs_by_deployment"] = {
        name: api.count_runs([i], started_after=shape_start) for name, i in deployment_ids.items()}
    return result


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    os.chdir(ROOT)  # served deployments resolve their entrypoints from the working directory
    settings, env = configure_environment(data_dir)
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    mail_dir = settings.resolved_mail_capture_dir
    db_url = env["NEEDLECARE_DATABASE_URL"]
    database.upgrade(db_url)
    stack = Stack(data_dir=data_dir, log_dir=log_dir, env=env,
                  web_url=f"http://127.0.0.1:{settings.web_port}",
                  api_url=settings.prefect_api_url.rstrip("/"), secret=register_clinic(db_url),
                  mail_dir=mail_dir)
    rng = random.Random(args.seed)
    events = EventFactory(stack.secret)
    mailbox = Mailbox(mail_dir)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "prefect": version("prefect"), "platform": platform.platform()},
        "settings": {"drain_linger_seconds": settings.drain_linger_seconds,
                     "drain_poll_seconds": settings.drain_poll_seconds,
                     "sweep_interval_seconds": settings.sweep_interval_seconds,
                     "runner_poll_frequency_s": 1, "trigger_within_s": 15, "database": "sqlite"},
        "parameters": {k: v for k, v in vars(args).items() if k != "keep"},
        "load_average_at_start": os.getloadavg(),
    }
    capture = start_capture(mail_dir, "127.0.0.1", settings.smtp_capture_port)
    api = PrefectAPI(stack.api_url)
    try:
        print(f"Starting the stack in {data_dir} (Prefect server first start ~30 s)…", flush=True)
        start_core(stack, settings)
        flows = spawn("flows", [str(BIN / "python"), "-m", "flows.serve"], env, log_dir)
        stack.children.append(flows)
        product_ids = wait_deployments(stack, api, PRODUCT_DEPLOYMENTS, {PRODUCT_TRIGGERED},
                                       "product startup")
        results["product"] = run_shape(
            stack, api, mailbox, events, product_ids, "product", args.latency_events, args.burst,
            args.workers, 120 + 0.5 * args.burst, rng)

        print("\n[naive] stopping the product's flows and deleting their deployments…", flush=True)
        stop_all([flows])
        stack.children.remove(flows)
        for deployment_id in product_ids.values():
            api.delete_deployment(deployment_id)
        naive = spawn("naive-flows", [str(BIN / "python"), "-m", "bench.naive_serve"], env, log_dir)
        stack.children.append(naive)
        naive_ids = wait_deployments(stack, api, (NAIVE_DEPLOYMENT,), {NAIVE_DEPLOYMENT},
                                     "naive startup")
        results["naive"] = run_shape(
            stack, api, mailbox, events, naive_ids, "naive", args.naive_latency_events,
            args.naive_burst, args.workers, 120 + 4 * args.naive_burst, rng)
        results["log_findings"] = scan_logs(log_dir)
        results["load_average_at_end"] = os.getloadavg()
        return results
    finally:
        # Nothing may be left behind, also on a second Ctrl-C while stopping.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping every process…", flush=True)
        stop_all(stack.children)
        capture.stop()
        api.close()


def scan_logs(log_dir: Path) -> dict[str, dict[str, int]]:
    """Counts of a few tell-tale lines per log (what failed quietly while we measured)."""
    needles = ("Traceback", "database is locked", "Crashed", "Failed", "lost", "ERROR")
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


def build_table(results: dict[str, Any]) -> tuple[str, dict[str, float | None]]:
    p, n = results["product"], results["naive"]
    rows: list[tuple[str, float, float, float | None, str]] = []
    ratios: dict[str, float | None] = {}
    for key, label in (("first_event_s", "latency, first event (cold), s"),
                       ("p50_s", "latency p50 (steady trickle), s"),
                       ("p95_s", "latency p95, s"), ("max_s", "latency max, s")):
        r = ratio(n["latency"][key], p["latency"][key])
        ratios[f"latency_{key}_naive_over_product"] = r
        rows.append((label, p["latency"][key], n["latency"][key], r, "naive/product"))
    rows.append(("flow runs during latency phase", p["latency"]["flow_runs_started"],
                 n["latency"]["flow_runs_started"], None, ""))
    rows.append(("burst size (events)", p["burst"]["events"], n["burst"]["events"], None, ""))
    for key, label in (("accepted_per_s", "burst: POSTs accepted/s"),
                       ("emails_per_s", "burst: end-to-end emails/s")):
        r = ratio(p["burst"][key], n["burst"][key])
        ratios[f"burst_{key}_product_over_naive"] = r
        rows.append((label, p["burst"][key], n["burst"][key], r, "product/naive"))
    rows.append(("burst: first POST → first email, s", p["burst"]["first_email_s"],
                 n["burst"]["first_email_s"], None, ""))
    rows.append(("burst: first POST → last email, s", p["burst"]["last_email_s"],
                 n["burst"]["last_email_s"], None, ""))
    rows.append(("flow runs during burst", p["burst"]["flow_runs_started"],
                 n["burst"]["flow_runs_started"], None, ""))
    m = results["machine"]
    lines = [
        f"event → email benchmark, {results['date']}",
        f"cores {m['cpu_count']} · python {m['python']} · prefect {m['prefect']} · SQLite · "
        f"loopback only · load avg at start {results['load_average_at_start'][0]:.2f}, "
        f"at end {results['load_average_at_end'][0]:.2f}",
        f"product: debounced trigger (within 15 s) + drain lingering "
        f"{results['settings']['drain_linger_seconds']:g} s + sweep every "
        f"{results['settings']['sweep_interval_seconds']} s; "
        "naive: one flow run per event",
        "",
        f"{'figure':<38}{'product':>10}{'naive':>10}{'ratio':>9}  ",
        "-" * 80,
    ]
    for label, pv, nv, r, how in rows:
        rs = f"{r:8.1f}x {how}" if r is not None else ""
        lines.append(f"{label:<38}{_fmt(pv):>10}{_fmt(nv):>10} {rs}")
    lines.append(f"flow runs by deployment: product {p['flow_runs_by_deployment']}, "
                 f"naive {n['flow_runs_by_deployment']}")
    return "\n".join(lines), ratios


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def write_results(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"event_to_email-{datetime.now(UTC):%Y-%m-%d}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.event_to_email", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-events", type=int, default=50,
                        help="product: events sent one at a time (default 50)")
    parser.add_argument("--burst", type=int, default=1000,
                        help="product: burst size (default 1000)")
    parser.add_argument("--naive-latency-events", type=int, default=20,
                        help="naive: events sent one at a time (default 20)")
    parser.add_argument("--naive-burst", type=int, default=100,
                        help="naive: burst size (default 100; ~0.7 runs/s on 2 cores)")
    parser.add_argument("--workers", type=int, default=8, help="burst POST threads (default 8)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random gaps (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    for name in ("latency_events", "burst", "naive_latency_events", "naive_burst", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    data_dir = Path(tempfile.mkdtemp(prefix="needlecare-bench-")).resolve()
    keep = args.keep
    started = time.monotonic()
    try:
        results = run(args, data_dir)
    except PhaseFailed as exc:
        keep = True
        print(f"\nFAILED {exc}\nEverything is stopped; logs kept in {data_dir / 'logs'}",
              file=sys.stderr)
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
    print("\n" + table)
    if results["log_findings"]:
        print(f"\nlog lines worth a look: {results['log_findings']}")
    print(f"\ntotal wall time {results['wall_seconds']:.0f} s")
    print(f"results: {write_results(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
