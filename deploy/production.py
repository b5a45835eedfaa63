"""The production stack run for real on one machine over loopback, for operators trying it and for tests
(:func:`production_stack`): `.venv/bin/python deploy/production.py up [--workers 2] [--web-workers 2]`.

In order, each polled until healthy: PostgreSQL (a local cluster standing in for the managed one), Redis, the
Prefect API (`--no-services`) and its services in their own process, the work pool, `prefect deploy --all`, the
application migrations and demo clinic, the process workers, the web app. Ctrl-C / SIGTERM stops it all.
"""

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiosmtpd.controller import Controller

from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import start_capture
from needlecare.dev.readiness import not_ready
from needlecare.dev.stack import Child, descendants, spawn, stop_all, wait_http
from needlecare.intake.sample import DEMO_CLINIC_ID, ensure_demo_clinic

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "needlecare-process"
PREFECT_YAML = ROOT / "deploy" / "prefect.yaml"
AUTOMATIONS_YAML = ROOT / "deploy" / "automations.yaml"
HEARTBEAT_SECONDS = "30"  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the workers' flow runs (deploy/automations.yaml)
REDIS_SETTINGS = {  # what the Prefect API and services need to share events and leases through Redis
    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
}


def free_port(wanted: int = 0) -> int:
    """``wanted`` on 127.0.0.1 if it is free; 0: any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
        except OSError:
            raise RuntimeError(f"port {wanted} on 127.0.0.1 is in use; choose another (0 picks a free one)") from None
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    """A local PostgreSQL cluster standing in for the managed one: socket only (``<root>/socket``), trust auth."""

    root: Path
    port: int
    bin_dir: Path

    def __post_init__(self) -> None:
        self.data, self.socket_dir = self.root / "data", self.root / "socket"

    def url(self, database: str, driver: str) -> str:
        return f"postgresql+{driver}://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def start(self) -> None:
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c max_connections=300"
        ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "120"]
        result = _as_postgres([*ctl, "-l", str(self.root / "server.log"), "start"], check=False)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.decode()} {log}")

    def stop(self) -> None:
        """Fast shutdown (clients disconnected, data kept); :meth:`start` brings it back (an outage)."""
        _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def ensure_database(self, name: str) -> None:
        args = [str(self.bin_dir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres"]
        found = _as_postgres([*args, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"]).stdout
        if found.strip() != b"1":
            _as_postgres([*args, "-c", f'CREATE DATABASE "{name}"'])


def _as_postgres(args: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    result = subprocess.run(args, capture_output=True, timeout=300)
    if check and result.returncode != 0:
        raise RuntimeError(f"{args[-1][:60]}: {result.stderr.decode(errors='replace')[-1000:]}")
    return result


def open_cluster(root: Path, port: int) -> PgCluster:
    """Initialise the cluster under ``root`` on first use, then start it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not (initdb := str(found[-1]) if found else shutil.which("initdb")):
        raise RuntimeError("PostgreSQL server binaries not found (`apt-get install postgresql`)")
    cluster = PgCluster(root, port, Path(initdb).parent)
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for path in (root, cluster.socket_dir):
            shutil.chown(path, "postgres", "postgres")
    if not (cluster.data / "PG_VERSION").exists():
        init = [str(cluster.bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "-A", "trust"]
        _as_postgres([*init, "-E", "UTF8", "--no-sync"])
    cluster.start()
    return cluster


@dataclass
class Options:
    data_dir: Path
    workers: int = 2
    worker_limit: int = 2  # flow runs one worker runs at once: a burst's helper runs then spread over workers
    web_workers: int = 2
    smtp_url: str | None = None  # an Apprise mailto:// URL; None: a local mail capture
    services: str = "separate"  # "separate": API --no-services + `server services start`; "inline": one process
    redis_url: str | None = None  # with "separate": an existing Redis; None: start redis-server on loopback
    web_port: int = 0
    prefect_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print


@dataclass
class ProductionStack:
    pg: PgCluster
    web_url: str
    api_url: str
    log_dir: Path
    env: dict[str, str]  # what every application process (web app, workers) has
    clinic_secret: str = ""
    mail_dir: Path | None = None
    services: list[Child] = field(default_factory=list)  # Prefect API, services, Redis
    workers: list[Child] = field(default_factory=list)
    web: Child | None = None
    killed: list[Child] = field(default_factory=list)
    capture: Controller | None = None

    @property
    def children(self) -> list[Child]:
        return [*self.services, *self.workers, *([self.web] if self.web else [])]

    def kill_worker(self, index: int) -> Child:
        """A lost machine: SIGKILL the worker and its flow runs (Prefect starts each in a session of its own)."""
        child = self.workers[index]
        child.kill()
        self.killed.append(child)
        return child

    def kill_prefect(self) -> list[Child]:
        """The Prefect server's machine lost: SIGKILL its API and services (Redis, their broker, stays)."""
        lost = [c for c in self.services if c.name.startswith("prefect-")]
        for child in lost:
            child.kill()
        self.killed.extend(lost)
        return lost

    def restart_prefect(self, timeout: float = 300) -> None:
        """Start what :meth:`kill_prefect` killed, with the same commands, and wait for the API."""
        for i, child in enumerate(self.services):
            if child in self.killed:
                self.killed.remove(child)
                self.services[i] = child.respawn()
        api = next(c for c in self.services if c.name == "prefect-api")
        wait_http(self.api_url + "/health", timeout, api)

    def api(self, method: str, path: str, body: object = None) -> object:
        response = httpx.request(method, self.api_url + path, json=body, timeout=30).raise_for_status()
        return response.json() if response.content else None

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is not None and c not in self.killed]


def base_env(opts: Options, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECARE_", "PREFECT_"))}
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(opts.data_dir.resolve() / "prefect-home"))
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore")
    return {**env, **opts.extra_env}


def run_cli(args: list[str], env: dict[str, str], log_dir: Path, name: str, cwd: Path = ROOT) -> None:
    with (log_dir / f"{name}.log").open("ab") as log:
        result = subprocess.run(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:4])} … failed ({result.returncode}); see {log_dir / name}.log")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, children: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while waiting for {what}")
        with contextlib.suppress(httpx.HTTPError):
            if predicate():
                return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_redis(data_dir: Path, log_dir: Path, stack: ProductionStack) -> str:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError(
            "the Prefect services in their own process need Redis (`apt-get install redis-server`, and "
            "`pip install prefect-redis`), or pass --redis-url, or run them inside the API with --services inline"
        )
    port = str(free_port())
    (data_dir / "redis").mkdir(exist_ok=True)
    args = [server, "--bind", "127.0.0.1", "--port", port, "--save", "", "--dir", str(data_dir / "redis")]
    stack.services.append(child := spawn("redis", args, dict(os.environ), log_dir))
    ping = [str(Path(server).with_name("redis-cli")), "-p", port, "ping"]
    wait_until(lambda: subprocess.run(ping, capture_output=True).stdout.strip() == b"PONG", 30, "Redis", [child])
    return f"redis://127.0.0.1:{port}/0"


def _workers_online(stack: ProductionStack, names: list[str]) -> bool:
    rows = stack.api("POST", f"/work_pools/{POOL}/workers/filter", {})
    assert isinstance(rows, list)
    return set(names) <= {w["name"] for w in rows if w.get("status") == "ONLINE"}


def _events_flow(stack: ProductionStack, event_id: str) -> bool:
    """An event posted to the API has reached the event persister (in the services process, through Redis)."""
    query = {"filter": {"id": {"id": [event_id]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}}
    found = stack.api("POST", "/events/filter", query)
    return isinstance(found, dict) and found["total"] == 1


def _deployments_ready(stack: ProductionStack) -> bool:
    """Every deployment of deploy/prefect.yaml registered on the pool and READY (a worker polls for it), its
    event triggers live."""
    wanted = {d["name"] for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    rows = stack.api("POST", "/deployments/filter", {"work_pools": {"name": {"any_": [POOL]}}})
    assert isinstance(rows, list)
    ready = wanted <= {d["name"] for d in rows if d.get("status") == "READY"}
    return ready and not not_ready(stack.api_url)


def apply_automations(api_url: str, path: Path = AUTOMATIONS_YAML) -> list[str]:
    """Create the automations of ``path``, replacing any of the same name (so a release can re-run it)."""
    from prefect.events.schemas.automations import AutomationCore

    wanted = [AutomationCore.model_validate(a) for a in yaml.safe_load(path.read_text())["automations"]]
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=30) as client:
        existing = client.post("/automations/filter", json={}).raise_for_status().json()
        for automation in wanted:
            for old in (a for a in existing if a["name"] == automation.name):
                client.delete(f"/automations/{old['id']}").raise_for_status()
            client.post("/automations/", json=automation.model_dump(mode="json")).raise_for_status()
    return [a.name for a in wanted]


def start(opts: Options, stack_holder: list[ProductionStack]) -> ProductionStack:
    """Start every part in order; the stack is appended to ``stack_holder`` at once, so a caller can stop
    what was started even when a later part fails."""
    say, data_dir = opts.say, opts.data_dir.resolve()
    (log_dir := data_dir / "logs").mkdir(parents=True, exist_ok=True)
    pg_port, prefect_port, web_port = free_port(), free_port(opts.prefect_port), free_port(opts.web_port)
    api_url, web_url = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{web_port}"

    say(f"PostgreSQL: cluster in {data_dir / 'pg'} (socket only, port {pg_port})…")
    stack = ProductionStack(open_cluster(data_dir / "pg", pg_port), web_url, api_url, log_dir, base_env(opts, api_url))
    stack_holder.append(stack)
    pg, env, separate = stack.pg, stack.env, opts.services == "separate"
    for name in ("needlecare", "prefect"):
        pg.ensure_database(name)
    prefect_env = {**env, "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", "asyncpg")}
    if separate:
        redis_url = opts.redis_url or _start_redis(data_dir, log_dir, stack)
        prefect_env.update(REDIS_SETTINGS, PREFECT_REDIS_MESSAGING_URL=redis_url, PREFECT_SERVER_DOCKET_URL=redis_url)
        say(f"Redis: {redis_url}")

    say(f"Prefect API on 127.0.0.1:{prefect_port} (first start migrates its database)…")
    server_args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)]
    server_args += ["--no-services"] if separate else []
    stack.services.append(api := spawn("prefect-api", server_args, prefect_env, log_dir))
    wait_http(api_url + "/health", 300, api)
    if separate:
        say("Prefect services in their own process…")
        services = [str(BIN / "prefect"), "server", "services", "start"]
        stack.services.append(spawn("prefect-services", services, prefect_env, log_dir))
    probe = {"id": str(uuid.uuid4()), "event": "needlecare.stack.started", "occurred": datetime.now(UTC).isoformat()}
    stack.api("POST", "/events", [{**probe, "resource": {"prefect.resource.id": "needlecare.stack"}}])
    wait_until(lambda: _events_flow(stack, probe["id"]), 120, "events to reach the services", stack.children)

    say(f"Work pool {POOL} and `prefect deploy --all`…")
    pool = [str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"]  # idempotent
    run_cli(pool, env, log_dir, "work-pool")
    deploy = [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)]
    run_cli(deploy, env, log_dir, "deploy")
    say(f"Automations of {AUTOMATIONS_YAML.name}: {', '.join(apply_automations(api_url))}")

    say("Application database: migrations and the demo clinic…")
    app_url = pg.url("needlecare", "psycopg")
    database.upgrade(app_url)
    secret_key = _persistent_secret(data_dir / "secret-key")
    if (smtp_url := opts.smtp_url) is None:  # a local capture stands in for the mail provider
        stack.mail_dir, smtp_port = data_dir / "outbox", free_port()
        stack.capture = start_capture(stack.mail_dir, port=smtp_port)
        smtp_url = f"mailto://127.0.0.1:{smtp_port}?mode=insecure&from=aftercare@needlecare.local"
    env.update(NEEDLECARE_ENV="production", NEEDLECARE_HOME=str(ROOT), NEEDLECARE_DATA_DIR=str(data_dir / "app"))
    env.update(NEEDLECARE_DATABASE_URL=app_url, NEEDLECARE_PREFECT_API_URL=api_url, NEEDLECARE_SECRET_KEY=secret_key)
    env.update(NEEDLECARE_PATIENT_EMAIL_URL=smtp_url, NEEDLECARE_PUBLIC_BASE_URL=web_url)
    env.update(PREFECT_FLOWS_HEARTBEAT_FREQUENCY=HEARTBEAT_SECONDS)
    env.update(opts.extra_env)
    stack.clinic_secret = ensure_demo_clinic(Settings(database_url=app_url))  # needs the database only
    database.get_engine(app_url).dispose()

    say(f"{opts.workers} process workers on pool {POOL}…")
    for name in (names := [f"needlecare-worker-{i + 1}" for i in range(opts.workers)]):
        args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", name]
        args += ["--limit", str(opts.worker_limit)]
        stack.workers.append(spawn(name, args, env, log_dir))
    wait_until(lambda: _workers_online(stack, names), 180, "the workers to come online", stack.children)
    wait_until(lambda: _deployments_ready(stack), 120, "the deployments to be ready", stack.children)

    say(f"Web app on {web_url} ({opts.web_workers} uvicorn workers)…")
    web_args = [str(BIN / "uvicorn"), "needlecare.web.app:app_from_env", "--factory", "--host", "127.0.0.1"]
    web_args += ["--port", str(web_port), "--workers", str(opts.web_workers)]
    stack.web = spawn("web", web_args, env, log_dir)
    wait_http(web_url + "/healthz", 180, stack.web)
    return stack


def stop(stack: ProductionStack) -> None:
    """SIGTERM every process group, then SIGKILL what is left, flow runs in their own sessions included."""
    orphans = [pid for child in stack.workers for pid in descendants(child.process.pid)]
    stop_all([c for c in stack.children if c.name != "redis"])  # Redis last: the API and services use it
    stop_all(stack.children)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stack.pg.stop()
    if stack.capture is not None:
        stack.capture.stop()


def _persistent_secret(path: Path) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


@contextlib.contextmanager
def production_stack(data_dir: Path, **kwargs: Any) -> Iterator[ProductionStack]:
    """Start the stack (keyword arguments as :class:`Options`), yield it, and stop everything on the way out."""
    holder: list[ProductionStack] = []
    try:
        yield start(Options(data_dir=data_dir, **kwargs), holder)
    finally:
        for stack in holder:
            stop(stack)


def banner(stack: ProductionStack) -> str:
    mail = f"local mail capture, one .eml per message in {stack.mail_dir}" if stack.mail_dir else "your SMTP server"
    return f"""
needlecare is running (production shape, one machine).
  Web app       {stack.web_url}  (POST {stack.web_url}/api/v1/events/session-completed)
  Prefect UI    {stack.api_url.removesuffix("/api")}
  Patient mail  {mail}
  Logs          {stack.log_dir}
  Workers       {", ".join(w.name for w in stack.workers)} on pool {POOL}; PostgreSQL in {stack.pg.root}

Demo clinic '{DEMO_CLINIC_ID}', webhook secret: {stack.clinic_secret}
Ctrl-C stops everything."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole production stack on this machine")
    for flag in ("--workers", "--worker-limit", "--web-workers"):
        up.add_argument(flag, type=int, default=2)
    up.add_argument("--data-dir", type=Path, default=ROOT / "var" / "production")
    up.add_argument("--smtp-url", help="Apprise mailto:// URL of the mail provider (default: a local capture)")
    up.add_argument("--services", choices=("separate", "inline"), default="separate")
    up.add_argument("--redis-url", help="an existing Redis for the Prefect API and services (default: start one)")
    up.add_argument("--web-port", type=int, default=8000, help="0 picks a free port")
    up.add_argument("--prefect-port", type=int, default=4200, help="0 picks a free port")
    auto = sub.add_parser("automations", help=f"apply {AUTOMATIONS_YAML.name} to a Prefect API (idempotent)")
    auto.add_argument("--api-url", default=os.environ.get("PREFECT_API_URL"), help="default: $PREFECT_API_URL")
    args = parser.parse_args(argv)
    if args.command == "automations":
        if not args.api_url:
            parser.error("automations: give --api-url or set PREFECT_API_URL")
        try:
            print("applied:", ", ".join(apply_automations(args.api_url)))
        except httpx.HTTPError as exc:
            print(f"could not apply the automations at {args.api_url}: {exc}", file=sys.stderr)
            return 1
        return 0
    signals: list[int] = []

    def _interrupt(signum: int, _frame: object) -> None:  # the first signal stops, later ones wait for it
        signals.append(signum)
        if len(signals) == 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    options = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        with production_stack(**options, say=lambda m: print(m, flush=True)) as stack:
            print(banner(stack), flush=True)
            while not (dead := stack.dead()):
                time.sleep(0.5)
            print(f"{dead[0].name} exited ({dead[0].process.returncode}), see {stack.log_dir}; stopping", flush=True)
            return 1
    except KeyboardInterrupt:
        print("Stopped every process group and the PostgreSQL cluster.", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"Could not start: {exc}; everything started was stopped.", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
