"""Events go to the Prefect API named in needlecare's settings, never to a throwaway server of Prefect's own."""

import os
import time
from pathlib import Path

import pytest

from needlecare.core import events
from needlecare.core.settings import get_settings
from tests.conftest import free_port


def test_an_unreachable_api_drops_the_event_quickly_without_an_ephemeral_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", raising=False)
    monkeypatch.setenv("NEEDLECARE_PREFECT_API_URL", url)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    get_settings.cache_clear()
    try:
        assert events.configured_prefect_api_url() == url
        assert events.prefect_api_reachable(timeout=1) is False
        started = time.monotonic()
        events.prefect_emitter(events.session_completed(1, "riverside-physio"))  # never raises
        assert time.monotonic() - started < 30
        assert os.environ["PREFECT_API_URL"] == url
        assert os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] == "false"
        assert not list((tmp_path / "prefect-home").glob("**/*.db")), "no ephemeral Prefect database was created"
    finally:
        get_settings.cache_clear()
