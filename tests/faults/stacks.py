"""The two stacks the fault suite runs on, with the handles to break them.

``EmbeddedStack``: what `make run` starts — one Prefect server on its own SQLite, the served flows, the web
app, the application on SQLite, default timings — with the SMTP capture behind a fault gate.
``ProductionFaultStack``: deploy/production.py's stack (PostgreSQL, Redis, Prefect API and services apart,
two process workers, two uvicorn workers) with the same gate.
"""

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlmodel import Session

from deploy.production import ProductionStack, production_stack
from models import ClinicCreate
from needlecare.core import db as database
from needlecare.dev.mailcapture import start_capture
from needlecare.dev.readiness import not_ready
from needlecare.dev.stack import Child, flows_command, spawn, stop_all, wait_http, web_command
from needlecare.intake.clinics import add_clinic
from tests.conftest import CLINIC_SECRET, free_port
from tests.e2e.stack import PrefectServer, base_env
from tests.faults.gate import Gate

MAIL_FROM = "aftercare@needlecare.local"
WORKER_LINE = re.compile(r"Worker '([^']+)' submitting flow run")


def _gate_and_capture(root: Path) -> tuple[Gate, Controller, Path]:
    mail_dir, port = root / "outbox", free_port()
    capture = start_capture(mail_dir, port=port)
    return Gate(port), capture, mail_dir


@dataclass
class EmbeddedStack:
    root: Path
    prefect: PrefectServer
    gate: Gate
    capture: Controller
    mail_dir: Path
    db_url: str
    web_url: str
    env: dict[str, str]
    name: str = "embedded"
    clinic_secret: str = CLINIC_SECRET
    children: dict[str, Child] = field(default_factory=dict)

    def dead(self) -> list[str]:
        found = [name for name, c in self.children.items() if c.process.poll() is not None]
        if self.prefect.child is not None and self.prefect.child.process.poll() is not None:
            found.append("prefect-server")
        return found

    def ready(self) -> bool:
        return not not_ready(self.prefect.api_url, timeout=5)

    def kill_prefect(self) -> None:
        assert self.prefect.child is not None
        self.prefect.child.kill()

    def restart_prefect(self) -> None:
        self.prefect.start()

    def kill_sender(self) -> str:
        """SIGKILL the served-flows process and its flow runs; a supervisor starts it again after 5 s."""
        flows = self.children["flows"]
        flows.kill()
        time.sleep(5)
        self.children["flows"] = flows.respawn()
        return "served-flows process killed, restarted"


@contextmanager
def embedded_stack() -> Iterator[EmbeddedStack]:
    root = Path(tempfile.mkdtemp(prefix="needlecare-faults-embedded-"))
    (root / "logs").mkdir()
    prefect = PrefectServer(home=root / "prefect", port=free_port(), log=root / "logs" / "prefect-server.log")
    gate, capture, mail_dir = _gate_and_capture(root)
    db_url = f"sqlite:///{root / 'needlecare.db'}"
    database.upgrade(db_url)
    with Session(database.get_engine(db_url)) as db:
        clinic = ClinicCreate(
            id="riverside-physio",
            name="Riverside Physio",
            phone="+15550100200",
            email="front-desk@riverside.example",
            timezone="America/New_York",
        )
        add_clinic(db, clinic, actor="test", secret=CLINIC_SECRET)
    web_port = free_port()
    env = base_env(prefect.home, prefect.api_url)
    env.update(
        NEEDLECARE_ENV="test",
        NEEDLECARE_DATA_DIR=str(root),
        NEEDLECARE_DATABASE_URL=db_url,
        NEEDLECARE_PREFECT_API_URL=prefect.api_url,
        NEEDLECARE_PATIENT_EMAIL_URL=f"mailto://127.0.0.1:{gate.port}?mode=insecure&from={MAIL_FROM}",
        NEEDLECARE_WEB_PORT=str(web_port),
        NEEDLECARE_PUBLIC_BASE_URL=f"http://127.0.0.1:{web_port}",
    )
    stack = EmbeddedStack(root, prefect, gate, capture, mail_dir, db_url, f"http://127.0.0.1:{web_port}", env)
    try:
        prefect.start()
        stack.children["web"] = spawn("web", web_command("127.0.0.1", web_port), env, root / "logs")
        stack.children["flows"] = spawn("flows", flows_command(), env, root / "logs")
        wait_http(stack.web_url + "/healthz", 120, stack.children["web"])
        yield stack
    finally:
        stop_all(list(stack.children.values()))
        prefect.stop()
        gate.close()
        capture.stop()
        database.get_engine(db_url).dispose()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ProductionFaultStack:
    stack: ProductionStack
    gate: Gate
    mail_dir: Path
    name: str = "production"
    orphaned_runs: list[str] = field(default_factory=list)

    @property
    def web_url(self) -> str:
        return self.stack.web_url

    @property
    def clinic_secret(self) -> str:
        return self.stack.clinic_secret

    @property
    def db_url(self) -> str:
        return self.stack.env["NEEDLECARE_DATABASE_URL"]

    def dead(self) -> list[str]:
        return [c.name for c in self.stack.dead()]

    def ready(self) -> bool:
        alive = [w for w in self.stack.workers if w not in self.stack.killed]
        return bool(alive) and not not_ready(self.stack.api_url, timeout=5)

    def kill_prefect(self) -> None:
        self.stack.kill_prefect()

    def restart_prefect(self) -> None:
        self.stack.restart_prefect()

    def running_by_worker(self) -> dict[str, list[str]]:
        """Ids of the RUNNING flow runs, by the worker that submitted them (from the runs' logs)."""
        active = {"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}, "limit": 50}
        runs = self.stack.api("POST", "/flow_runs/filter", active)
        assert isinstance(runs, list)
        found: dict[str, list[str]] = {}
        for run in runs:
            logs = self.stack.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
            assert isinstance(logs, list)
            for log in logs:
                if m := WORKER_LINE.search(log["message"]):
                    found.setdefault(m.group(1), []).append(run["id"])
                    break
        return found

    def kill_sender(self) -> str:
        """SIGKILL a worker that is running a flow run (a lost machine); it stays dead. The runs it held are
        kept in ``orphaned_runs``."""
        deadline = time.monotonic() + 60
        while not (running := self.running_by_worker()) and time.monotonic() < deadline:
            time.sleep(0.5)
        names = [w.name for w in self.stack.workers]
        victim = next((n for n in names if n in running), names[-1])
        self.orphaned_runs = running.get(victim, [])
        self.stack.kill_worker(names.index(victim))
        return f"worker {names.index(victim) + 1} of {len(names)} killed (-9, not restarted)"

    def stop_database(self) -> None:
        self.stack.pg.stop()

    def start_database(self) -> None:
        self.stack.pg.start()


@contextmanager
def production_fault_stack(workers: int = 2) -> Iterator[ProductionFaultStack]:
    root = Path(tempfile.mkdtemp(prefix="needlecare-faults-production-"))
    root.chmod(0o755)  # the PostgreSQL cluster below it runs as the postgres user
    gate, capture, mail_dir = _gate_and_capture(root)
    smtp_url = f"mailto://127.0.0.1:{gate.port}?mode=insecure&from={MAIL_FROM}"
    try:
        with production_stack(root, workers=workers, web_workers=2, smtp_url=smtp_url, say=print) as stack:
            yield ProductionFaultStack(stack, gate, mail_dir)
    finally:
        gate.close()
        capture.stop()
        shutil.rmtree(root, ignore_errors=True)
