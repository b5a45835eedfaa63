"""`make run`: the whole system on one box, on embedded defaults, stopped cleanly by Ctrl-C.

Starts, in order: the database schema and demo clinic, a local Prefect server (its own SQLite),
the local mail capture and the local SMS gateway (in this process), the web app, and the served flows with their
triggers; the banner is printed once the triggers are live (a probe event has started an aftercare run), so
the first event starts a run or is drained by the probe's lingering run.
Every child runs in its own process group, so stopping kills flow-run subprocesses too.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session

from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import start_capture
from needlecare.dev.readiness import not_ready, probe_trigger
from needlecare.dev.smsgateway import INBOUND_PATH, SmsGateway, sms_dir
from needlecare.intake.sample import DEMO_CLINIC_ID, ensure_demo_clinic, sample_bytes, sample_event

BIN = Path(sys.executable).parent


def prefect_server_command(port: int) -> list[str]:
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def web_command(host: str, port: int, *, access_log: bool = True) -> list[str]:
    command = [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "needlecare.web.app:app_from_env",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
    ]
    return command if access_log else [*command, "--no-access-log"]


def flows_command() -> list[str]:
    return [str(BIN / "python"), "-m", "flows.serve"]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None

    def kill(self) -> None:
        """SIGKILL the child and every process below it (a lost machine: flow runs that Prefect started in
        sessions of their own included), and reap it."""
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def respawn(self) -> "Child":
        """The same command, environment and log again (after :meth:`kill`)."""
        if self.log_dir is None:
            raise RuntimeError(f"{self.name} was not started by spawn(); it cannot be respawned")
        return spawn(self.name, self.args, self.env, self.log_dir)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), including those in sessions of their own."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, ppid
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found += (kids := parents.get(todo.pop(), []))
        todo += kids
    return found


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_http(url: str, timeout: float, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def child_env(settings: Settings) -> dict[str, str]:
    data_dir = settings.data_dir.resolve()
    env = dict(os.environ)
    env.update(
        {
            "NEEDLECARE_DATA_DIR": str(data_dir),
            "NEEDLECARE_DATABASE_URL": settings.database_url or f"sqlite:///{data_dir / 'needlecare.db'}",
            "NEEDLECARE_PREFECT_API_URL": settings.prefect_api_url,
            "PREFECT_API_URL": settings.prefect_api_url,
            "PREFECT_HOME": str(data_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": env.get("PREFECT_RUNNER_POLL_FREQUENCY", "1"),
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PREFECT_UI_API_URL": settings.prefect_api_url,
        }
    )
    sms_url = settings.resolved_patient_sms_url  # development: the local SMS gateway
    if sms_url is not None:
        env.setdefault("NEEDLECARE_PATIENT_SMS_URL", sms_url)
    return env


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    with (log_dir / f"{name}.log").open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Child(name, process, list(args), dict(env), log_dir)


def stop_all(children: list[Child], grace: float = 10.0) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in reversed(children):
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # the group may hold grandchildren (flow runs, server services) even if the leader exited
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)


DEMO_STAFF_EMAIL = "dana@riverside.example"
DEMO_STAFF_PASSWORD = "needlecare-demo-only"  # development stack only; `needlecare run` refuses production


def wait_ready(api_url: str, timeout: float, children: list[Child]) -> list[str]:
    """Wait until :func:`readiness.not_ready` is empty; returns what was still pending at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pending = not_ready(api_url)
        if not pending or time.monotonic() > deadline:
            return pending
        for child in children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}")
        time.sleep(0.5)


def ensure_demo_staff(settings: Settings) -> None:
    """A staff login for the demo clinic, so the cases and dashboard pages can be opened at once."""
    from needlecare.staff.auth import create_user, find_user

    with Session(database.get_engine(settings.resolved_database_url)) as db:
        if find_user(db, DEMO_STAFF_EMAIL) is None:
            create_user(db, DEMO_CLINIC_ID, DEMO_STAFF_EMAIL, "Dana Reyes", DEMO_STAFF_PASSWORD, actor="make-run")


def run(settings: Settings, say: "Say") -> int:
    if not settings.is_development:
        say("`needlecare run` is the development stack; in production run each service on its own.")
        return 2
    data_dir = settings.data_dir.resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    busy = [
        f"{name} port {port}"
        for name, port in (
            ("web", settings.web_port),
            ("Prefect", settings.prefect_port),
            ("SMTP capture", settings.smtp_capture_port),
            ("SMS gateway", settings.sms_gateway_port),
        )
        if not port_free("127.0.0.1", port)
    ]
    if busy:
        say(
            f"Cannot start: {', '.join(busy)} already in use. Stop what holds it, or choose other ports with "
            "NEEDLECARE_WEB_PORT / NEEDLECARE_PREFECT_PORT (and NEEDLECARE_PREFECT_API_URL) / "
            "NEEDLECARE_SMTP_CAPTURE_PORT / NEEDLECARE_SMS_GATEWAY_PORT."
        )
        return 1
    env = child_env(settings)
    database.upgrade(env["NEEDLECARE_DATABASE_URL"])
    local = settings.model_copy(update={"database_url": env["NEEDLECARE_DATABASE_URL"]})
    secret = ensure_demo_clinic(local)
    ensure_demo_staff(local)

    children: list[Child] = []
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    capture = start_capture(
        settings.resolved_mail_capture_dir.resolve(), settings.smtp_capture_host, settings.smtp_capture_port
    )
    gateway = SmsGateway(
        sms_dir(settings).resolve(),
        inbound_url=f"http://{settings.web_host}:{settings.web_port}{INBOUND_PATH}",
        inbound_token=settings.resolved_sms_inbound_token,
    ).start(settings.sms_gateway_host, settings.sms_gateway_port)
    try:
        say(f"Starting the Prefect server on 127.0.0.1:{settings.prefect_port} (first start takes ~30 s)…")
        server = spawn(
            "prefect-server",
            prefect_server_command(settings.prefect_port),
            env,
            log_dir,
        )
        children.append(server)
        wait_http(settings.prefect_api_url.rstrip("/") + "/health", 120, server)
        say("Starting the web app and the flows…")
        web = spawn(
            "web",
            web_command(settings.web_host, settings.web_port),
            env,
            log_dir,
        )
        children.append(web)
        children.append(spawn("flows", flows_command(), env, log_dir))
        wait_http(f"http://{settings.web_host}:{settings.web_port}/healthz", 60, web)
        say("Waiting for the flows to register their deployments and event triggers…")
        pending = wait_ready(settings.prefect_api_url, 180, children)
        if not pending and not any(probe_trigger(settings.prefect_api_url) for _ in range(4)):
            pending = ["a probe event started no aftercare run within 60 s"]
        if pending:
            say(
                "Still not ready after 180 s: " + "; ".join(pending) + ". Events sent now are picked up by the "
                f"next dispatch pass instead (every {settings.dispatch_interval_seconds} s); see "
                f"{log_dir / 'flows.log'}."
            )
        sample = data_dir / "sample-event.json"
        body = sample_bytes()
        sample.write_bytes(body)
        _banner(settings, say, secret, sample, log_dir)
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    say(
                        f"{child.name} stopped unexpectedly (exit {child.process.returncode}); "
                        f"see {log_dir / (child.name + '.log')}. Shutting down."
                    )
                    return 1
            time.sleep(0.5)
        say("\nStopping…")
        return 0
    except RuntimeError as exc:
        say(f"Could not start: {exc}. Logs are in {log_dir}.")
        return 1
    finally:
        stop_all(children)
        capture.stop()
        gateway.stop()
        say("Stopped; no process left behind.")


class Say:
    def __call__(self, message: str) -> None:
        print(message, flush=True)


def _as_typed(path: Path) -> Path:
    """``path`` relative to the working directory when it lies inside it (var/sample-event.json, as the README
    shows it), else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _banner(settings: Settings, say: Say, secret: str, sample_file: Path, log_dir: Path) -> None:
    web = f"http://{settings.web_host}:{settings.web_port}"
    sample = _as_typed(sample_file)
    prefect_ui = settings.prefect_api_url.removesuffix("/").removesuffix("/api")
    say(f"""
needlecare is running (development).
  Web app      {web}
  Outbox       {web}/outbox   (every email and text message sent is caught here)
  Prefect UI   {prefect_ui}
  API docs     {web}/docs
  Logs         {log_dir}

Demo clinic '{DEMO_CLINIC_ID}', webhook secret: {secret}
Staff pages  {web}/cases and {web}/dashboard: log in as {DEMO_STAFF_EMAIL} / {DEMO_STAFF_PASSWORD}

Send a sample session-completed event (then open the outbox):
  .venv/bin/needlecare session complete --file {sample}
or over HTTP, signed (t=<unix time>,v1=<hex>, good for {settings.webhook_tolerance_seconds} s: made as you send):
  curl -sS -X POST {web}/api/v1/events/session-completed \\
    -H 'Content-Type: application/json' \\
    -H "X-Needlecare-Signature: $(.venv/bin/needlecare clinic sign {DEMO_CLINIC_ID} --file {sample})" \\
    --data-binary @{sample}
A new sample with a fresh session id: .venv/bin/needlecare session sample --out {sample}
See the first check-in now (a dispatch pass as of when it can go; its link opens the survey):
  .venv/bin/needlecare dispatch --as-of next
Text the clinic as the sample patient would (the local SMS gateway posts it to the web app; the reply is on the
outbox after the next dispatch pass; "7 0" answers an open 1-day check-in):
  .venv/bin/python -m needlecare.dev.smsgateway reply {sample_event()["patient"]["phone"]} HELP

Ctrl-C stops everything.""")
