"""`needlecare clinic sms` and `clinic add --region`: stored on the clinic, checked first, the URL never echoed."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from models import AuditEvent, Clinic
from needlecare.cli.main import app
from needlecare.core import db as database
from needlecare.core.settings import get_settings
from needlecare.intake.ingest import InvalidSession, validate

runner = CliRunner()
TWILIO = "twilio://AC0123456789abcdef0123456789abcdef:secrettoken0123456789abcdef0123@+15551230000"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NEEDLECARE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    add = ["clinic", "add", "north-run", "--name", "North Run Clinic", "--email", "desk@north.example"]
    assert runner.invoke(app, [*add, "--region", "gb"]).exit_code == 0
    yield tmp_path
    get_settings.cache_clear()


def _clinic() -> Clinic:
    with Session(database.get_engine()) as db:
        clinic = db.get(Clinic, "north-run")
        assert clinic is not None
        return clinic


def test_region_from_add_reads_local_numbers_and_the_route_is_stored_but_never_printed(env: Path) -> None:
    assert _clinic().region == "GB"
    result = runner.invoke(app, ["clinic", "sms", "north-run", "--sms-url", TWILIO, "--region", "us"])
    assert result.exit_code == 0, result.output
    assert "secrettoken" not in result.output and "its own route" in result.output
    clinic = _clinic()
    assert (clinic.region, clinic.sms_url) == ("US", TWILIO)
    with Session(database.get_engine()) as db:
        audit = db.exec(select(AuditEvent).where(AuditEvent.action == "clinic.sms_configured")).one()
    assert "secrettoken" not in str(audit.detail) and audit.detail == {"changed": ["region", "sms_url"]}
    cleared = runner.invoke(app, ["clinic", "sms", "north-run", "--clear-sms-url"])
    assert cleared.exit_code == 0 and _clinic().sms_url is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to change"),
        (["--region", "GBR"], "--region"),
        (["--region", "1x"], "two-letter"),
        (["--sms-url", "no-scheme"], "not a URL"),
        (["--sms-url", "nosuchplugin://host/path"], "Apprise does not recognise it"),
        (["--sms-url", TWILIO, "--clear-sms-url"], "not both"),
    ],
)
def test_bad_input_is_refused_with_the_fix_and_nothing_changes(env: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["clinic", "sms", "north-run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert (_clinic().region, _clinic().sms_url) == ("GB", None)


def test_an_unknown_clinic_is_named(env: Path) -> None:
    result = runner.invoke(app, ["clinic", "sms", "nobody", "--region", "GB"])
    assert result.exit_code == 1 and "no clinic 'nobody'" in result.output


def test_the_clinic_region_decides_how_a_number_without_plus_is_read(env: Path) -> None:
    assert validate(_body("07400 123456"), region="GB").patient.phone == "+447400123456"
    with pytest.raises(InvalidSession, match="phone"):
        validate(_body("07400 123456"), region="US")


def _body(phone: str) -> dict[str, object]:
    from tests.factories import event_body

    body = event_body()
    body["patient"] = {**body["patient"], "phone": phone}  # type: ignore[dict-item]
    return body
