"""Fixtures that start the real parts once: one Prefect server per test run, one stack per database."""

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlmodel import Session

from models import ClinicCreate
from needlecare.core import db as database
from needlecare.dev.mailcapture import start_capture
from needlecare.dev.readiness import SPEC, not_ready, probe_trigger
from needlecare.dev.smsgateway import INBOUND_PATH, SmsGateway
from needlecare.dev.stack import flows_command, spawn, wait_http, web_command
from needlecare.intake.clinics import add_clinic
from tests.conftest import CLINIC_SECRET, DB_KINDS, free_port
from tests.e2e.stack import PrefectServer, Stack, base_env
from tests.pg import PgCluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    root = Path(tempfile.mkdtemp(prefix="needlecare-prefect-"))
    server = PrefectServer(home=root / "home", port=free_port(), log=root / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=DB_KINDS)
def stack(request: pytest.FixtureRequest, prefect_server: PrefectServer) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix=f"needlecare-e2e-{request.param}-"))
    (root / "logs").mkdir()
    pg_name = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{root / 'app.db'}"
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        pg_name = cluster.create_database()
        db_url = cluster.url(pg_name)
    database.upgrade(db_url)
    with Session(database.get_engine(db_url)) as db:
        add_clinic(
            db,
            ClinicCreate(
                id="riverside-physio",
                name="Riverside Physio",
                phone="+15550100200",
                email="front-desk@riverside.example",
                timezone="America/New_York",
            ),
            actor="test",
            secret=CLINIC_SECRET,
        )
    smtp_port, web_port, sms_port = free_port(), free_port(), free_port()
    sms_token = f"e2e-inbound-token-{sms_port}"
    env = base_env(prefect_server.home, prefect_server.api_url)
    env.update(
        {
            "NEEDLECARE_ENV": "test",
            "NEEDLECARE_DATA_DIR": str(root),
            "NEEDLECARE_DATABASE_URL": db_url,
            "NEEDLECARE_PREFECT_API_URL": prefect_server.api_url,
            "NEEDLECARE_SMTP_CAPTURE_PORT": str(smtp_port),
            "NEEDLECARE_WEB_PORT": str(web_port),
            "NEEDLECARE_PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
            "NEEDLECARE_DISPATCH_INTERVAL_SECONDS": "5",
            "NEEDLECARE_DRAIN_LINGER_SECONDS": "5",
            "NEEDLECARE_PATIENT_SMS_URL": f"json://127.0.0.1:{sms_port}/sms?:to={{to}}",
            "NEEDLECARE_SMS_INBOUND_TOKEN": sms_token,
        }
    )
    capture = start_capture(root / "outbox", port=smtp_port)
    inbound_url = f"http://127.0.0.1:{web_port}{INBOUND_PATH}"
    gateway = SmsGateway(root / "sms", inbound_url=inbound_url, inbound_token=sms_token).start(port=sms_port)
    s = Stack(
        root=root,
        db_url=db_url,
        env=env,
        web_url=f"http://127.0.0.1:{web_port}",
        mail_dir=root / "outbox",
        capture=capture,
        sms_gateway=gateway,
    )
    try:
        s.children.append(
            spawn(
                "web",
                web_command("127.0.0.1", web_port),
                env,
                root / "logs",
            )
        )
        s.children.append(spawn("flows", flows_command(), env, root / "logs"))
        wait_http(s.web_url + "/healthz", 60, s.children[0])
        s.wait_for(lambda: not not_ready(prefect_server.api_url), 90, "the served deployments and their triggers")
        # Stored is not yet loaded: a busy server's trigger cache can lag; a probe event proves the trigger fires.
        s.wait_for(lambda: probe_trigger(prefect_server.api_url), 90, "a probe event to start an aftercare run")
        yield s
    finally:
        s.stop()
        _delete_deployments(prefect_server)
        database.get_engine(db_url).dispose()
        if pg_name:
            request.getfixturevalue("pg_cluster").drop_database(pg_name)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _delete_deployments(server: PrefectServer, patience: float = 120) -> None:
    """So the next stack waits for its own runner, not a paused leftover. A Prefect server on SQLite can stall
    for many seconds on a busy machine: retry each call until ``patience`` runs out."""
    names = [d["name"] for d in yaml.safe_load(SPEC.read_text())["deployments"]]
    deadline = time.monotonic() + patience
    while True:
        try:
            r = httpx.post(
                f"{server.api_url}/deployments/filter", json={"deployments": {"name": {"any_": names}}}, timeout=30
            )
            r.raise_for_status()
            for deployment in r.json():  # its trigger's automation too (deleting a deployment keeps it)
                owned = f"{server.api_url}/automations/owned-by/prefect.deployment.{deployment['id']}"
                httpx.delete(owned, timeout=30).raise_for_status()
                httpx.delete(f"{server.api_url}/deployments/{deployment['id']}", timeout=30).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
