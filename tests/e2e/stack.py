"""The real stack for end-to-end tests: Prefect server, served flows, web app, SMTP sink."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from models.base import utcnow
from needlecare.core.signing import sign
from needlecare.dev.mailcapture import CapturedMail, list_mail
from needlecare.dev.smsgateway import RecordedSms, SmsGateway, list_sms
from needlecare.dev.stack import Child, prefect_server_command, stop_all, wait_http

BIN = Path(sys.executable).parent

TIMEOUT_SCALE = float(os.environ.get("NEEDLECARE_E2E_TIMEOUT_SCALE", "3"))


def base_env(prefect_home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECARE_", "PREFECT_"))}
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
    )
    return env


@dataclass
class PrefectServer:
    home: Path
    port: int
    log: Path
    child: Child | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        env = base_env(self.home, self.api_url)
        out = self.log.open("ab")
        process = subprocess.Popen(
            prefect_server_command(self.port),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.child = Child("prefect-server", process)
        wait_http(self.api_url + "/health", 180, self.child)

    def stop(self) -> None:
        if self.child:
            stop_all([self.child])
            self.child = None

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.api_url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()


@dataclass
class Stack:
    root: Path
    db_url: str
    env: dict[str, str]
    web_url: str
    mail_dir: Path
    capture: Controller
    children: list[Child] = field(default_factory=list)
    sms_gateway: SmsGateway | None = None  # the local SMS gateway the stack's SMS route points at

    def mails(self) -> list[CapturedMail]:
        return list_mail(self.mail_dir, limit=10_000)

    def texts(self) -> list[RecordedSms]:
        """Text messages the local SMS gateway accepted, newest first."""
        return list_sms(self.sms_gateway.directory, limit=10_000) if self.sms_gateway else []

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` until it holds. ``timeout`` is what a quiet machine needs; the deadline is that
        times TIMEOUT_SCALE, so a busy machine (CI beside other work) slows the test instead of failing it."""
        timeout *= TIMEOUT_SCALE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for child in self.children:
                if child.process.poll() is not None:
                    raise AssertionError(f"{child.name} died; see {self.root / 'logs'}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; logs in {self.root / 'logs'}")

    def stop(self) -> None:
        stop_all(self.children)
        self.capture.stop()
        if self.sms_gateway is not None:
            self.sms_gateway.stop()


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset zone where it is about ``hour``:00 now (Etc/GMT names carry POSIX signs)."""
    offset = (hour - utcnow().hour + 12) % 24 - 12  # -12..+11
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def post_session(stack: "Stack", body: dict[str, Any], secret: str) -> int:
    """POST a signed session-completed event to the stack's web app; returns the stored session's id."""
    raw = json.dumps(body).encode()
    response = httpx.post(
        stack.web_url + "/api/v1/events/session-completed",
        content=raw,
        headers={"Content-Type": "application/json", "X-Needlecare-Signature": sign(raw, secret)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return int(response.json()["session_id"])
