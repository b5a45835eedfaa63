"""Helpers for browser tests: the real web app in a thread, Debian's Chromium, a phone, screenshots."""

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from playwright.sync_api import Browser, Page, Playwright

from needlecare.core.settings import Settings
from needlecare.dev.mailcapture import CapturedMail, list_mail
from needlecare.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
# Root in a container without network: no sandbox, no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "en-US",
}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
SURVEY_LINK = re.compile(r"https?://[^\s/]+/s/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def launch_chromium(p: Playwright) -> Browser:
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def serve_app(settings: Settings, port: int, timeout: float = 30) -> Iterator[str]:
    """The real app (``create_app``) under uvicorn in a background thread; yields its base URL."""
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-browser-tests", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url + "/healthz", thread, timeout)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _wait_healthy(url: str, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the web app thread ended before answering /healthz")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


def survey_link(mail_dir: Path, to: str, step_title: str, timeout: float = 10) -> str:
    """The link in the newest survey email to ``to`` for the check titled ``step_title`` (text part)."""
    deadline = time.monotonic() + timeout
    while True:
        for mail in list_mail(mail_dir):
            if _is_survey_for(mail, to, step_title):
                match = SURVEY_LINK.search(mail.text)
                assert match, f"no survey link in the text part of {mail.subject!r}"
                return match.group(0)
        if time.monotonic() > deadline:
            seen = [(m.to, m.subject) for m in list_mail(mail_dir)]
            raise AssertionError(f"no '{step_title}' survey email to {to}; captured: {seen}")
        time.sleep(0.1)


def _is_survey_for(mail: CapturedMail, to: str, step_title: str) -> bool:
    """The first message for that check (not a reminder, not the aftercare email that lists the checks)."""
    return any(to in address for address in mail.to) and mail.subject.startswith(f"Your {step_title.lower()} from")


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-output/screenshots/ for a reviewer to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
