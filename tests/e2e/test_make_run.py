"""`needlecare run` (what `make run` starts) as a newcomer uses it: start, send the printed command,
read the email on /outbox, Ctrl-C, and nothing is left running."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from needlecare.dev.stack import port_free
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_run_prints_a_working_command_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {
        "NEEDLECARE_WEB_PORT": free_port(),
        "NEEDLECARE_PREFECT_PORT": free_port(),
        "NEEDLECARE_SMTP_CAPTURE_PORT": free_port(),
        "NEEDLECARE_SMS_GATEWAY_PORT": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECARE_", "PREFECT_"))}
    env.update({k: str(v) for k, v in ports.items()})
    env["NEEDLECARE_DATA_DIR"] = str(tmp_path / "var")
    env["NEEDLECARE_PREFECT_API_URL"] = f"http://127.0.0.1:{ports['NEEDLECARE_PREFECT_PORT']}/api"
    env["NEEDLECARE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{ports['NEEDLECARE_WEB_PORT']}"
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "needlecare"), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        banner = log.read_text()
        command = re.search(r"^\s+(\.venv/bin/needlecare session complete --file \S+)$", banner, re.M)
        assert command, banner
        args = shlex.split(command.group(1))
        args[0] = str(BIN / "needlecare")
        sent = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and "accepted" in sent.stdout, sent.stdout + sent.stderr
        web = f"http://127.0.0.1:{ports['NEEDLECARE_WEB_PORT']}"
        deadline = time.monotonic() + 120
        while not httpx.get(f"{web}/outbox.json", timeout=30).json():
            assert time.monotonic() < deadline, "no email on /outbox"
            time.sleep(0.5)
        [mail] = httpx.get(f"{web}/outbox.json", timeout=30).json()
        assert mail["to"] == ["sam@example.org"] and "Hi Sam" in mail["text"]
        assert "After your session" in httpx.get(f"{web}/outbox", timeout=30).text
        # The printed reply command: the local SMS gateway posts the text with the development inbound token.
        printed = re.search(r"^\s+(\.venv/bin/python -m needlecare\.dev\.smsgateway reply \S+ HELP)$", banner, re.M)
        assert printed, banner
        reply = shlex.split(printed.group(1))
        reply[0] = str(BIN / "python")
        texted = subprocess.run(reply, env=env, capture_output=True, text=True, timeout=60)
        assert texted.returncode == 0 and '"status": "received"' in texted.stdout, texted.stdout + texted.stderr
        deadline = time.monotonic() + 120  # the reply goes out on the next dispatch pass, to the local gateway
        while not httpx.get(f"{web}/outbox/sms.json", timeout=30).json():
            assert time.monotonic() < deadline, "no text message on /outbox"
            time.sleep(0.5)
        [text] = httpx.get(f"{web}/outbox/sms.json", timeout=30).json()
        assert text["to"] == "+15551234567" and "Reply STOP to stop." in text["text"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "no process left behind" in log.read_text()
    assert _processes_with(f"NEEDLECARE_DATA_DIR={tmp_path / 'var'}") == []
    assert all(port_free("127.0.0.1", p) for p in ports.values())
