"""`needlecare staff add --totp`, `staff totp` and the common-password check, run in-process against a real
SQLite file."""

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from models import AuditEvent, StaffUser
from models.base import utcnow
from needlecare.cli.main import app as cli_app
from needlecare.core import db as database
from needlecare.core.settings import get_settings
from needlecare.staff import auth, totp

runner = CliRunner()
PASSWORD = "tamarind owl under the pier"
EMAIL = "dana@riverside.example"
ADD = ["staff", "add", "--clinic", "riverside-physio", "--email", EMAIL, "--name", "Dana", "--password-stdin"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NEEDLECARE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    result = runner.invoke(cli_app, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "d@r.example"])
    assert result.exit_code == 0, result.output
    yield tmp_path
    database.get_engine().dispose()
    get_settings.cache_clear()


def cli_db() -> Session:
    return Session(database.get_engine(get_settings().resolved_database_url), expire_on_commit=False)


def uri_in(output: str) -> str:
    [uri] = [line for line in output.splitlines() if line.startswith("otpauth://")]
    return uri


def stored_user() -> StaffUser:
    with cli_db() as db:
        user = db.exec(select(StaffUser)).one()
    return user


def test_add_with_totp_prints_the_provisioning_uri_once(env: Path) -> None:
    result = runner.invoke(cli_app, [*ADD, "--totp"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    uri = urlsplit(uri_in(result.output))
    assert uri.netloc == "totp" and "dana%40riverside.example" in uri.path
    query = parse_qs(uri.query)
    assert query["issuer"] == ["needlecare"]
    secret = query["secret"][0]
    assert "shown only this once" in result.output and PASSWORD not in result.output
    user = stored_user()
    assert user.totp_secret == secret
    listed = runner.invoke(cli_app, ["staff", "list", "--clinic", "riverside-physio"])
    assert listed.exit_code == 0 and secret not in listed.output and "otpauth" not in listed.output
    with cli_db() as db:  # the code an authenticator app makes from the URI is accepted once
        code = pyotp.TOTP(secret).now()
        assert totp.check_totp(db, user, code, utcnow())
        assert not totp.check_totp(db, user, code, utcnow())
        actions = [e.action for e in db.exec(select(AuditEvent)).all()]
    assert "staff.totp_enabled" in actions


def test_add_without_totp_leaves_it_off(env: Path) -> None:
    result = runner.invoke(cli_app, ADD, input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "otpauth" not in result.output and stored_user().totp_secret is None


def test_totp_command_turns_it_on_with_a_new_secret_and_off(env: Path) -> None:
    assert runner.invoke(cli_app, [*ADD, "--totp"], input=PASSWORD + "\n").exit_code == 0
    first = stored_user().totp_secret
    again = runner.invoke(cli_app, ["staff", "totp", "--email", EMAIL])
    assert again.exit_code == 0, again.output
    assert stored_user().totp_secret == parse_qs(urlsplit(uri_in(again.output)).query)["secret"][0] != first
    off = runner.invoke(cli_app, ["staff", "totp", "--email", EMAIL, "--off"])
    assert off.exit_code == 0 and "turned off" in off.output
    assert stored_user().totp_secret is None
    missing = runner.invoke(cli_app, ["staff", "totp", "--email", "nobody@riverside.example"])
    assert missing.exit_code == 2 and "no staff user" in missing.output


@pytest.mark.parametrize(
    "password", ["password1234", "Password2026!", "qwerty 123456", "zzzzzzzzzzzzzz", "NeedleCare123"]
)
def test_a_common_password_is_refused_at_add_and_passwd(env: Path, password: str) -> None:
    result = runner.invoke(cli_app, ADD, input=password + "\n")
    assert result.exit_code == 2, result.output
    assert "most commonly used" in result.output and "nothing was changed" in result.output
    with cli_db() as db:
        assert db.exec(select(StaffUser)).first() is None
    assert runner.invoke(cli_app, ADD, input=PASSWORD + "\n").exit_code == 0
    changed = runner.invoke(cli_app, ["staff", "passwd", "--email", EMAIL, "--password-stdin"], input=password + "\n")
    assert changed.exit_code == 2 and "most commonly used" in changed.output
    with cli_db() as db:
        assert auth.authenticate(db, EMAIL, PASSWORD, utcnow()) is not None


def test_uncommon_passwords_pass_the_check() -> None:
    for password in ("tamarind owl under the pier", "correct horse battery staple", "9vK#e2!q-Lm7"):
        auth.check_password_strength(password)
    with pytest.raises(auth.WeakPassword, match="most commonly used"):
        auth.check_password_strength("passwordpassword")
