"""Events go to the Prefect API named in needlecare's settings, never to a throwaway server of Prefect's own."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from needlecare.core import events
from needlecare.core.settings import get_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_settings_name_the_api_when_the_environment_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("NEEDLECARE_PREFECT_API_URL", url)
    get_settings.cache_clear()
    try:
        assert events.configured_prefect_api_url() == url
        assert events.prefect_api_reachable(timeout=1) is False
    finally:
        get_settings.cache_clear()


def test_an_unreachable_api_drops_the_event_quickly_without_an_ephemeral_server(tmp_path: Path) -> None:
    """A fresh process, as the CLI is: the emit goes to the configured API (down here) and returns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEEDLECARE_"))}
    env |= {
        "NEEDLECARE_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "NEEDLECARE_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    code = (
        "import os; from needlecare.core import events; "
        "events.prefect_emitter(events.session_completed(1, 'riverside-physio')); "
        "print(os.environ['PREFECT_API_URL'], os.environ['PREFECT_SERVER_ALLOW_EPHEMERAL_MODE'])"
    )
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 60
    assert run.stdout.split() == [env["NEEDLECARE_PREFECT_API_URL"], "false"]
    assert not list((tmp_path / "prefect-home").glob("**/*.db")), "no ephemeral Prefect database was created"
