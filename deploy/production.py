"""The production stack, run for real on one machine over loopback: every part the README's "Production"
section puts on its own machine, started in the same order with the same commands and environment.

    .venv/bin/python deploy/production.py up [--workers 2] [--web-workers 2] [--data-dir var/production]

Order: PostgreSQL (application and Prefect databases; a local cluster stands in for the managed one),
Redis when the Prefect services run in their own process (the API and the services exchange events
through it), the Prefect API (`prefect server start --no-services`), the Prefect services
(`prefect server services start`), the work pool, `prefect deploy --all`, the application migrations and
the demo clinic, the process workers, and the web app (uvicorn, several workers). Each part is polled
until healthy before the next starts. Ctrl-C / SIGTERM stops every process group and the cluster.
Tests use :func:`production_stack`.
"""

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller

from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import start_capture
from needlecare.dev.stack import Child, port_free, spawn, stop_all, wait_http
from needlecare.intake.sample import DEMO_CLINIC_ID, ensure_demo_clinic

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "needlecare-process"
PREFECT_YAML = ROOT / "deploy" / "prefect.yaml"
DEPLOYMENTS = (
    "aftercare/on-session-completed",
    "escalation/on-survey-answered",
    "dispatch/dispatch",
    "compile-outcome-reports/nightly-outcome-reports",
    "refresh-dashboard-figures/refresh-dashboard-figures",
)
REDIS_SETTINGS = {  # what the Prefect API and services need to share events and leases through Redis
    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PgCluster:
    """A local PostgreSQL cluster standing in for the managed one: socket only (``<root>/socket``), trust auth."""

    root: Path
    port: int
    bin_dir: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str, driver: str) -> str:
        return f"postgresql+{driver}://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args], check=check)

    def start(self) -> None:
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c max_connections=300"
        result = self._ctl("-o", options, "-w", "-t", "120", "-l", str(self.root / "server.log"), "start", check=False)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.decode()} {log}")

    def stop(self) -> None:
        """Fast shutdown (clients disconnected, data kept); :meth:`start` brings it back (an outage)."""
        self._ctl("-m", "fast", "-w", "stop", check=False)

    def ensure_database(self, name: str) -> None:
        args = [str(self.bin_dir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres"]
        found = _as_postgres([*args, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"]).stdout
        if found.strip() != b"1":
            _as_postgres([*args, "-c", f'CREATE DATABASE "{name}"'])


def _pg_bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries not found (`apt-get install postgresql`)")


def _as_postgres(args: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    result = subprocess.run(args, capture_output=True, timeout=300)
    if check and result.returncode != 0:
        raise RuntimeError(f"{args[-1][:60]}: {result.stderr.decode(errors='replace')[-1000:]}")
    return result


def open_cluster(root: Path, port: int) -> PgCluster:
    """Initialise the cluster under ``root`` on first use, then start it."""
    cluster = PgCluster(root, port, _pg_bin_dir())
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for path in (root, cluster.socket_dir):
            shutil.chown(path, "postgres", "postgres")
    if not (cluster.data / "PG_VERSION").exists():
        init = [str(cluster.bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "-A", "trust"]
        _as_postgres([*init, "-E", "UTF8", "--no-sync"])
    cluster.start()
    return cluster


def pick_port(wanted: int) -> int:
    if wanted and not port_free("127.0.0.1", wanted):
        raise RuntimeError(f"port {wanted} on 127.0.0.1 is in use; choose another (0 picks a free one)")
    return wanted or free_port()


@dataclass
class Options:
    data_dir: Path
    workers: int = 2
    web_workers: int = 2
    smtp_url: str | None = None  # an Apprise mailto:// URL; None: a local mail capture
    services: str = "separate"  # "separate": API --no-services + `server services start`; "inline": one process
    redis_url: str | None = None  # with "separate": an existing Redis; None: start redis-server on loopback
    web_port: int = 0
    prefect_port: int = 0
    pg_port: int = 0
    worker_query_seconds: float = 10.0  # PREFECT_WORKER_QUERY_SECONDS (Prefect's default)
    extra_env: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print


@dataclass
class ProductionStack:
    options: Options
    pg: PgCluster
    web_url: str
    api_url: str
    clinic_secret: str
    mail_dir: Path | None
    log_dir: Path
    env: dict[str, str]  # what every application process (web app, workers) has
    services: list[Child] = field(default_factory=list)  # Prefect API, services, Redis
    workers: list[Child] = field(default_factory=list)
    web: Child | None = None
    killed: list[Child] = field(default_factory=list)
    capture: Controller | None = None

    @property
    def children(self) -> list[Child]:
        return [*self.services, *self.workers, *([self.web] if self.web else [])]

    def kill_worker(self, index: int) -> Child:
        """SIGKILL a worker's whole process group (the worker and its flow-run processes): a lost machine."""
        child = self.workers[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait(timeout=30)
        self.killed.append(child)
        return child

    def api(self, method: str, path: str, body: object = None) -> object:
        response = httpx.request(method, self.api_url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is not None and c not in self.killed]


def base_env(opts: Options, data_dir: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECARE_", "PREFECT_"))}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(data_dir / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        }
    )
    env.update(opts.extra_env)
    return env


def run_cli(args: list[str], env: dict[str, str], log_dir: Path, name: str, cwd: Path = ROOT) -> None:
    with (log_dir / f"{name}.log").open("ab") as log:
        result = subprocess.run(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    if result.returncode != 0:
        tail = (log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(args[:4])} … failed ({result.returncode}):\n{tail}")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, children: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while waiting for {what}")
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_redis(data_dir: Path, log_dir: Path, stack: ProductionStack) -> str:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError(
            "the Prefect services in their own process need Redis (`apt-get install redis-server`, and "
            "`pip install prefect-redis`), or pass --redis-url, or run them inside the API with --services inline"
        )
    port = free_port()
    (data_dir / "redis").mkdir(exist_ok=True)
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    child = spawn("redis", [*args, "--dir", str(data_dir / "redis")], dict(os.environ), log_dir)
    stack.services.append(child)

    def pong() -> bool:
        import socket

        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    wait_until(pong, 30, "Redis", [child])
    return f"redis://127.0.0.1:{port}/0"


def _redis_env(url: str) -> dict[str, str]:
    return {**REDIS_SETTINGS, "PREFECT_REDIS_MESSAGING_URL": url, "PREFECT_SERVER_DOCKET_URL": url}


def _workers_online(stack: ProductionStack, names: list[str]) -> bool:
    rows = stack.api("POST", f"/work_pools/{POOL}/workers/filter", {})
    assert isinstance(rows, list)
    online = {w["name"] for w in rows if w.get("status") == "ONLINE"}
    return set(names) <= online


def _deployments_ready(stack: ProductionStack) -> bool:
    for name in DEPLOYMENTS:
        r = httpx.get(f"{stack.api_url}/deployments/name/{name}", timeout=5)
        if r.status_code != 200 or r.json().get("status") != "READY":
            return False
    return True


def start(opts: Options, stack_holder: list[ProductionStack]) -> ProductionStack:
    """Start every part in order; the stack is appended to ``stack_holder`` at once, so a caller can stop
    what was started even when a later part fails."""
    say = opts.say
    data_dir = opts.data_dir.resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pg_port, prefect_port, web_port = pick_port(opts.pg_port), pick_port(opts.prefect_port), pick_port(opts.web_port)
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    web_url = f"http://127.0.0.1:{web_port}"

    say(f"PostgreSQL: cluster in {data_dir / 'pg'} (socket only, port {pg_port})…")
    pg = open_cluster(data_dir / "pg", pg_port)
    for name in ("needlecare", "prefect"):
        pg.ensure_database(name)
    env = base_env(opts, data_dir, api_url)
    stack = ProductionStack(opts, pg, web_url, api_url, "", None, log_dir, env)
    stack_holder.append(stack)
    prefect_env = {**env, "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", "asyncpg")}
    if opts.services == "separate":
        redis_url = opts.redis_url or _start_redis(data_dir, log_dir, stack)
        if redis_url != "EXPERIMENT-none":
            prefect_env.update(_redis_env(redis_url))
        say(f"Redis: {redis_url}")

    say(f"Prefect API on 127.0.0.1:{prefect_port} (first start migrates its database)…")
    server_args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)]
    if opts.services == "separate":
        server_args.append("--no-services")
    api = spawn("prefect-api", server_args, prefect_env, log_dir)
    stack.services.append(api)
    wait_http(api_url + "/health", 300, api)
    if opts.services == "separate":
        say("Prefect services in their own process…")
        stack.services.append(
            spawn("prefect-services", [str(BIN / "prefect"), "server", "services", "start"], prefect_env, log_dir)
        )

    say(f"Work pool {POOL} and `prefect deploy --all`…")
    pools = httpx.post(api_url + "/work_pools/filter", json={}, timeout=30).json()
    if POOL not in {p["name"] for p in pools}:
        run_cli([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], env, log_dir, "work-pool")
    deploy = [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)]
    run_cli(deploy, env, log_dir, "deploy")

    say("Application database: migrations and the demo clinic…")
    app_url = pg.url("needlecare", "psycopg")
    database.upgrade(app_url)
    secret_key = _persistent_secret(data_dir / "secret-key")
    if opts.smtp_url is None:
        smtp_port = free_port()
        stack.mail_dir = data_dir / "outbox"
        stack.capture = start_capture(stack.mail_dir, port=smtp_port)
        smtp_url = f"mailto://127.0.0.1:{smtp_port}?mode=insecure&from=aftercare@needlecare.local"
    else:
        smtp_url = opts.smtp_url
    env.update(
        {
            "NEEDLECARE_ENV": "production",
            "NEEDLECARE_HOME": str(ROOT),
            "NEEDLECARE_DATA_DIR": str(data_dir / "app"),
            "NEEDLECARE_DATABASE_URL": app_url,
            "NEEDLECARE_PREFECT_API_URL": api_url,
            "NEEDLECARE_PATIENT_EMAIL_URL": smtp_url,
            "NEEDLECARE_SECRET_KEY": secret_key,
            "NEEDLECARE_PUBLIC_BASE_URL": web_url,
        }
    )
    env.update(opts.extra_env)
    settings = Settings(env="production", database_url=app_url, secret_key=secret_key, patient_email_url=smtp_url)
    stack.clinic_secret = ensure_demo_clinic(settings)
    database.get_engine(app_url).dispose()

    names = [f"needlecare-worker-{i + 1}" for i in range(opts.workers)]
    say(f"{opts.workers} process workers on pool {POOL}…")
    worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": str(opts.worker_query_seconds)}
    for name in names:
        args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", name]
        stack.workers.append(spawn(name, args, worker_env, log_dir))
    wait_until(lambda: _workers_online(stack, names), 180, "the workers to come online", stack.children)
    wait_until(lambda: _deployments_ready(stack), 120, "the deployments to be ready", stack.children)

    say(f"Web app on {web_url} ({opts.web_workers} uvicorn workers)…")
    web_args = [str(BIN / "uvicorn"), "needlecare.web.app:app_from_env", "--factory", "--host", "127.0.0.1"]
    web_args += ["--port", str(web_port), "--workers", str(opts.web_workers)]
    stack.web = spawn("web", web_args, env, log_dir)
    wait_http(web_url + "/healthz", 180, stack.web)
    return stack


def stop(stack: ProductionStack) -> None:
    stop_all([*stack.services, *stack.workers, *([stack.web] if stack.web else [])])
    if stack.capture is not None:
        stack.capture.stop()
    stack.pg.stop()


def _persistent_secret(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@contextlib.contextmanager
def production_stack(
    data_dir: Path, workers: int = 2, web_workers: int = 2, **kwargs: object
) -> Iterator[ProductionStack]:
    holder: list[ProductionStack] = []
    opts = Options(data_dir=data_dir, workers=workers, web_workers=web_workers, **kwargs)  # type: ignore[arg-type]
    try:
        yield start(opts, holder)
    finally:
        if holder:
            stop(holder[0])


def banner(stack: ProductionStack) -> str:
    ui = stack.api_url.removesuffix("/api")
    mail = f"local mail capture, one .eml per message in {stack.mail_dir}" if stack.mail_dir else "your SMTP server"
    return f"""
needlecare is running (production shape, one machine).
  Web app       {stack.web_url}  (POST {stack.web_url}/api/v1/events/session-completed)
  Prefect UI    {ui}
  Patient mail  {mail}
  Logs          {stack.log_dir}
  Workers       {", ".join(w.name for w in stack.workers)} on pool {POOL}
  PostgreSQL    {stack.pg.url("needlecare", "psycopg")}

Demo clinic '{DEMO_CLINIC_ID}', webhook secret: {stack.clinic_secret}
Ctrl-C stops everything."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole production stack on this machine")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--web-workers", type=int, default=2)
    up.add_argument("--data-dir", type=Path, default=ROOT / "var" / "production")
    up.add_argument("--smtp-url", help="Apprise mailto:// URL of the mail provider (default: a local capture)")
    up.add_argument("--services", choices=("separate", "inline"), default="separate")
    up.add_argument("--redis-url", help="an existing Redis for the Prefect API and services (default: start one)")
    up.add_argument("--web-port", type=int, default=8000, help="0 picks a free port")
    up.add_argument("--prefect-port", type=int, default=4200, help="0 picks a free port")
    args = parser.parse_args(argv)
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    opts = Options(
        data_dir=args.data_dir,
        workers=args.workers,
        web_workers=args.web_workers,
        smtp_url=args.smtp_url,
        services=args.services,
        redis_url=args.redis_url,
        web_port=args.web_port,
        prefect_port=args.prefect_port,
        say=lambda m: print(m, flush=True),
    )
    holder: list[ProductionStack] = []
    try:
        stack = start(opts, holder)
        print(banner(stack), flush=True)
        while not stopping:
            if dead := stack.dead():
                print(f"{dead[0].name} exited ({dead[0].process.returncode}); see {stack.log_dir}", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    except RuntimeError as exc:
        print(f"Could not start: {exc}", flush=True)
        return 1
    finally:
        if holder:
            print("Stopping…", flush=True)
            stop(holder[0])
            print("Stopped: every process group and the PostgreSQL cluster.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
