"""The README's first screen, walked as a newcomer does: every command it shows, in the order shown, from a
plain shell, and each page it names opened in Chromium (axe-core checked).

The commands run in a scratch directory laid out like a fresh checkout (``.venv``, ``Makefile`` and the files
``make`` depends on, linked), so relative paths such as ``var/sample-event.json`` resolve as in the README.
Only the ports come from the environment, so the walk cannot collide with anything else on the machine.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import free_port
from tests.e2e import axe
from tests.e2e.browser import SURVEY_LINK, launch_chromium

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FIRST_SCREEN = README.split("\n## ", 1)[0]
AFTERCARE_WITHIN = 15.0  # seconds from the CLI command to the email on /outbox (issue: no dispatch pass)
# `make test` is the suite this test runs in: it is the one command of the first screen not run here.
NOT_RUN = {"make test"}


def first_screen_commands() -> list[str]:
    """Shell commands of the first screen, in order of first mention: the lines of ``sh`` blocks and inline
    commands (the prose names ``make run`` again after its block; that is the same step)."""
    found = []
    for match in re.finditer(r"```sh\n(.*?)```|`((?:\.venv/bin/|make )[^`\n]+)`", FIRST_SCREEN, re.S):
        if match.group(1) is not None:
            found += [line.split("#", 1)[0].strip() for line in match.group(1).splitlines()]
        else:
            found.append(match.group(2).strip())
    return list(dict.fromkeys(c for c in found if c))


def test_the_first_screen_lists_these_commands() -> None:
    assert first_screen_commands() == [
        "make run",
        "make test",
        ".venv/bin/needlecare session complete --file var/sample-event.json",
        ".venv/bin/needlecare dispatch --as-of next",
    ]


def _scratch_checkout(root: Path) -> Path:
    checkout = root / "checkout"
    checkout.mkdir()
    for name in (".venv", "Makefile", "pyproject.toml", "requirements.lock"):
        (checkout / name).symlink_to(ROOT / name)
    return checkout


def _shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _mails(web: str) -> list[dict[str, object]]:
    mails: list[dict[str, object]] = httpx.get(f"{web}/outbox.json", timeout=30).json()
    return mails


def _aftercare_runs_live_since(api: str, since: datetime) -> list[str]:
    """Ids of aftercare flow runs (they start from events only; the trigger debounces, and a run lingers to
    serve the events that follow) that had not ended by ``since``."""
    body = {"flows": {"name": {"any_": ["aftercare"]}}, "limit": 200}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()
    return [
        r["id"]
        for r in runs
        if r["start_time"] and (r["end_time"] is None or datetime.fromisoformat(r["end_time"]) >= since)
    ]


def _answer_with_a_red_flag(page: Page) -> None:
    """Answer every question of the check-in with mild values, and tick one red flag."""
    for name in page.eval_on_selector_all("form input[type=radio]", "els => [...new Set(els.map(e => e.name))]"):
        page.locator(f'form input[type=radio][name="{name}"]').first.check()
    flags = page.locator("form input[type=checkbox]:not([value=none])")
    assert flags.count() > 0, "the 1-day check-in asks about red flags"
    flags.first.check()


def test_the_readme_first_screen_as_written(tmp_path: Path) -> None:
    commands = [c for c in first_screen_commands() if c not in NOT_RUN]
    ports = {"NEEDLECARE_WEB_PORT": free_port(), "NEEDLECARE_PREFECT_PORT": free_port()}
    ports["NEEDLECARE_SMTP_CAPTURE_PORT"] = free_port()
    ports["NEEDLECARE_SMS_GATEWAY_PORT"] = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECARE_", "PREFECT_"))}
    env.update({k: str(v) for k, v in ports.items()})
    web = f"http://127.0.0.1:{ports['NEEDLECARE_WEB_PORT']}"
    api = f"http://127.0.0.1:{ports['NEEDLECARE_PREFECT_PORT']}/api"
    env["NEEDLECARE_PREFECT_API_URL"] = api
    env["NEEDLECARE_PUBLIC_BASE_URL"] = web
    checkout = _scratch_checkout(tmp_path)
    log = tmp_path / "make-run.log"

    assert commands[0] == "make run"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            shlex.split(commands[0]),
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops everything" not in log.read_text():
            assert stack.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert commands[1] in log.read_text(), "the banner prints the README's command"

        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context().new_page()
            page.set_default_timeout(15_000)

            started, sent_at = time.monotonic(), datetime.now(UTC)
            sent = _shell(commands[1], checkout, env)
            cli_seconds = time.monotonic() - started
            assert sent.returncode == 0, sent.stdout + sent.stderr
            accepted = re.search(r"session (\d+) accepted", sent.stdout)
            assert accepted, sent.stdout
            page.goto(f"{web}/outbox")
            while "After your session" not in page.content():
                assert time.monotonic() - started < AFTERCARE_WITHIN, f"no aftercare email on /outbox: {_mails(web)}"
                time.sleep(0.25)
                page.reload()
            seen_after = time.monotonic() - started
            print(f"\nCLI {cli_seconds:.1f} s; aftercare email on /outbox {seen_after:.1f} s after it started")
            live = _aftercare_runs_live_since(api, sent_at)
            assert live, "an aftercare run (started by an event) was running when the email went out"
            axe.expect_no_violations(page, "the outbox")
            # The outbox serves an email's HTML part sandboxed (no scripts), so axe reads a copy of it.
            href = page.get_by_role("link", name="HTML part").first.get_attribute("href")
            page.set_content(httpx.get(f"{web}{href}", timeout=30).text)
            expect(page.locator("body")).to_contain_text("Hi Sam")
            axe.expect_no_violations(page, "the aftercare email", email=True)

            dispatched = _shell(commands[2], checkout, env)
            assert dispatched.returncode == 0, dispatched.stdout + dispatched.stderr
            assert re.search(r"sent [1-9]\d* message", dispatched.stdout), dispatched.stdout
            links = [m for mail in _mails(web) for m in SURVEY_LINK.findall(str(mail["text"]))]
            assert links, f"a check-in email with its link: {dispatched.stdout}"
            page.goto(links[0])
            expect(page.locator("form")).to_be_visible()
            axe.expect_no_violations(page, "the check-in survey")
            _answer_with_a_red_flag(page)
            with page.expect_navigation(wait_until="load") as answered:
                page.locator("form button[type=submit]").last.click()
            assert answered.value is not None and answered.value.status == 200, page.content()[:2000]
            expect(page.get_by_role("alert").first).to_be_visible()
            axe.expect_no_violations(page, "the advice after a red flag")

            page.goto(f"{web}/cases")
            page.get_by_label("Email address").fill("dana@riverside.example")
            page.get_by_label("Password").fill("needlecare-demo-only")
            page.get_by_role("button", name=re.compile("log in", re.I)).click()
            expect(page).to_have_url(re.compile(r"/cases"))
            expect(page.locator("main")).to_contain_text("Sam")
            axe.expect_no_violations(page, "the case list")
            deadline = time.monotonic() + 60
            while not any(
                "front-desk" in json.dumps(m["to"]) or "case" in str(m["subject"]).lower() for m in _mails(web)
            ):
                assert time.monotonic() < deadline, (
                    f"the case's alert in the outbox: {[m['subject'] for m in _mails(web)]}"
                )
                time.sleep(0.5)
            browser.close()
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches make and what it started
        code = stack.wait(timeout=90)
    # make passes Ctrl-C on by dying of it once its child is done; what it started stopped cleanly.
    assert code in (0, -signal.SIGINT), log.read_text()[-3000:]
    assert "no process left behind" in log.read_text()
