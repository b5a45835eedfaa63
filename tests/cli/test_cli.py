"""The command line, run in-process with Typer's runner against a real SQLite file."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from needlecare.cli.main import app
from needlecare.core import events
from needlecare.core.settings import get_settings
from tests.conftest import free_port
from tests.factories import event_body

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NEEDLECARE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_clinic_add_prints_the_secret_once_and_refuses_a_second_add(env: Path) -> None:
    args = ["clinic", "add", "riverside-physio", "--name", "Riverside Physio", "--email", "desk@riverside.example"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "webhook secret (shown once): whsec_" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output
    listed = runner.invoke(app, ["clinic", "list"])
    assert "riverside-physio" in listed.output and "whsec_" not in listed.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Id", "--name", "x", "--email", "a@b.org"], "lower-case letters"),
        (["ok-id", "--name", "x", "--email", "nope"], "email address"),
        (["ok-id", "--name", "x", "--email", "a@b.org", "--timezone", "Mars/Base"], "IANA time zone"),
    ],
)
def test_clinic_add_validates(env: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["clinic", "add", *args])
    assert result.exit_code == 2 and message in result.output


def test_session_complete_accepts_then_reports_duplicate(env: Path, emitted: list[events.AppEvent]) -> None:
    runner.invoke(app, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "desk@riverside.example"])
    path = env / "event.json"
    path.write_text(json.dumps(event_body()))
    first = runner.invoke(app, ["session", "complete", "--file", str(path)])
    assert first.exit_code == 0 and "accepted" in first.output
    second = runner.invoke(app, ["session", "complete", "--file", str(path)])
    assert second.exit_code == 0 and "duplicate" in second.output
    assert len(emitted) == 1


def test_session_complete_says_when_the_stack_is_not_running(
    env: Path, emitted: list[events.AppEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI talks to the Prefect API in needlecare's settings; when nothing answers there it says so."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("NEEDLECARE_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    get_settings.cache_clear()
    runner.invoke(app, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "desk@riverside.example"])
    path = env / "event.json"
    path.write_text(json.dumps(event_body()))
    result = runner.invoke(app, ["session", "complete", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert "accepted and stored" in result.output and "is not answering" in result.output
    assert "next dispatch pass" in result.output


def test_dispatch_explains_a_deferral_in_words(
    env: Path, emitted: list[events.AppEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check-in due at 22:30 in New York waits for the end of quiet hours, and the pass says so."""
    from datetime import UTC, datetime

    from needlecare.intake import ingest

    runner.invoke(app, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "desk@riverside.example"])
    path = env / "event.json"
    path.write_text(json.dumps(event_body(completed_at="2026-11-22T03:30:00Z")))  # 22:30 the evening before, NY
    # The event arrives just after the session, whatever today's date is (ingest refuses a session more than a year
    # old or in the future by its own clock).
    monkeypatch.setattr(ingest, "utcnow", lambda: datetime(2026, 11, 22, 3, 40, tzinfo=UTC))
    assert runner.invoke(app, ["session", "complete", "--file", str(path)]).exit_code == 0
    result = runner.invoke(app, ["dispatch", "--as-of", "2026-11-23T03:31:00Z"])
    assert result.exit_code == 0, result.output
    assert "Dispatch pass as of Mon 23 Nov 2026 03:31 UTC" in result.output
    assert "deferred: check-in check_24h" in result.output
    assert "quiet hours (21:00-08:00) in America/New_York until 08:00, Mon 23 Nov (America/New_York)" in result.output


def test_session_complete_explains_what_is_wrong(env: Path) -> None:
    runner.invoke(app, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "desk@riverside.example"])
    path = env / "bad.json"
    path.write_text(json.dumps(event_body(injury="tennis_elbow", side="up")))
    result = runner.invoke(app, ["session", "complete", "--file", str(path)])
    assert result.exit_code == 2
    assert "side:" in result.output
    missing = runner.invoke(app, ["session", "complete", "--file", str(env / "missing.json")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def test_sample_is_a_valid_event(env: Path) -> None:
    from needlecare.intake import ingest

    result = runner.invoke(app, ["session", "sample"])
    assert result.exit_code == 0
    body = ingest.validate(json.loads(result.output))
    assert body.clinic_id == "riverside-physio"


def test_dispatch_as_of_accepts_iso_and_relative_times_and_refuses_others(env: Path) -> None:
    iso = runner.invoke(app, ["dispatch", "--as-of", "2026-11-23T09:00:00Z", "--json"])
    assert iso.exit_code == 0 and '"as_of": "2026-11-23T09:00:00+00:00"' in iso.output
    relative = runner.invoke(app, ["dispatch", "--as-of", "+24h", "--json"])
    assert relative.exit_code == 0 and '"planned": 0' in relative.output
    for bad in ("tomorrow", "2026-11-23T09:00:00"):
        result = runner.invoke(app, ["dispatch", "--as-of", bad])
        assert result.exit_code == 2 and "--as-of" in result.output


@pytest.mark.parametrize("hours_ago", [0.1, 5, 11, 17])
def test_dispatch_as_of_next_opens_the_first_check_in_at_any_time_of_day(
    env: Path, emitted: list[events.AppEvent], hours_ago: float
) -> None:
    """Sessions ended at four local times of day: 'next' always lands where the check-in can go."""
    from datetime import timedelta

    from models.base import utcnow

    runner.invoke(app, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "desk@riverside.example"])
    path = env / "event.json"
    path.write_text(json.dumps(event_body(completed_at=(utcnow() - timedelta(hours=hours_ago)).isoformat())))
    assert runner.invoke(app, ["session", "complete", "--file", str(path)]).exit_code == 0
    result = runner.invoke(app, ["dispatch", "--as-of", "next", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["opened"] == 1 and summary["deferred"] == 0, summary
    assert summary["claimed"] == 2, summary  # the aftercare notice and the check-in went to the mail route


def test_dispatch_as_of_next_with_nothing_planned_says_so(env: Path) -> None:
    result = runner.invoke(app, ["dispatch", "--as-of", "next"])
    assert result.exit_code == 0 and "No check-in is planned" in result.output
