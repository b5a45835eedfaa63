"""Staff logins (needlecare/staff/auth.py) and `needlecare staff …`: hashing, no lockout, sessions, CSRF, audit.

Database tests run on SQLite and PostgreSQL through the shared ``db`` fixture.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from models import AuditEvent, Clinic, ClinicCreate, Practitioner, StaffUser, WebSession
from models.base import utcnow
from needlecare.cli.main import app as cli_app
from needlecare.core import db as database
from needlecare.core.settings import get_settings
from needlecare.intake.clinics import add_clinic
from needlecare.staff import auth

PASSWORD = "correct horse battery staple"
EMAIL = "dana@riverside.example"
SECRET = "test-secret-key-for-csrf-0123456789abcdef"


def make_user(db: Session, clinic: Clinic, email: str = EMAIL, password: str = PASSWORD) -> StaffUser:
    return auth.create_user(db, clinic.id, email, "Dana Reyes", password)


def count(db: Session, model: Any) -> int:
    return int(db.exec(select(func.count()).select_from(model)).one())


def audit_rows(db: Session, action: str) -> list[AuditEvent]:
    return list(db.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))).all())


# ---- hashing --------------------------------------------------------------------------------------------


def test_hash_is_self_describing_scrypt_with_a_fresh_salt() -> None:
    stored = auth.hash_password(PASSWORD)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    expected = hashlib.scrypt(PASSWORD.encode(), salt=base64.b64decode(salt), n=2**14, r=8, p=1, dklen=32)
    assert base64.b64decode(digest) == expected  # really scrypt with those parameters
    assert PASSWORD not in stored
    assert auth.hash_password(PASSWORD) != stored  # a new salt each time


def test_verify_accepts_the_password_and_nothing_else() -> None:
    stored = auth.hash_password(PASSWORD)
    assert auth.verify_password(PASSWORD, stored)
    assert not auth.verify_password(PASSWORD + " ", stored)
    assert not auth.verify_password(PASSWORD.upper(), stored)
    assert not auth.verify_password("", stored)


@pytest.mark.parametrize(
    "stored",
    ["", "plain-text", "bcrypt$16384$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$***$AAAA", "a$b$c"],
)
def test_verify_refuses_malformed_hashes(stored: str) -> None:
    assert not auth.verify_password(PASSWORD, stored)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = auth.hash_password(PASSWORD)
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.verify_password(PASSWORD, stored)
    assert not auth.verify_password("wrong password!!", stored)
    assert len(calls) == 2


@pytest.mark.parametrize("password", ["", "short", "elevenchars", " " * 12])
def test_weak_passwords_are_refused_with_a_clear_message(password: str) -> None:
    with pytest.raises(auth.WeakPassword) as exc:
        auth.hash_password(password)
    assert "at least 12 characters" in str(exc.value) or "only spaces" in str(exc.value)


def test_twelve_characters_are_enough() -> None:
    assert auth.verify_password("tamarind-owl", auth.hash_password("tamarind-owl"))


# ---- users ----------------------------------------------------------------------------------------------


def test_create_user_stores_lower_case_email_and_a_hash(db: Session, clinic: Clinic) -> None:
    user = auth.create_user(db, clinic.id, "  Dana@Riverside.EXAMPLE ", " Dana Reyes ", PASSWORD)
    stored = db.get(StaffUser, user.id)
    assert stored is not None
    assert stored.email == EMAIL and stored.name == "Dana Reyes"
    assert stored.password_hash.startswith("scrypt$") and PASSWORD not in stored.password_hash
    [added] = audit_rows(db, "staff.added")
    assert added.entity_id == str(user.id)
    assert EMAIL not in json.dumps(added.detail) and PASSWORD not in json.dumps(added.detail)


def test_create_user_explains_what_is_wrong(db: Session, clinic: Clinic) -> None:
    with pytest.raises(auth.UnknownClinic, match="unknown clinic 'nowhere'"):
        auth.create_user(db, "nowhere", EMAIL, "Dana", PASSWORD)
    with pytest.raises(auth.InvalidEmail, match="email address"):
        auth.create_user(db, clinic.id, "not-an-email", "Dana", PASSWORD)
    with pytest.raises(auth.WeakPassword, match="at least 12"):
        auth.create_user(db, clinic.id, EMAIL, "Dana", "short")
    with pytest.raises(auth.AuthError, match="name"):
        auth.create_user(db, clinic.id, EMAIL, "  ", PASSWORD)
    with pytest.raises(auth.UnknownPractitioner):
        auth.create_user(db, clinic.id, EMAIL, "Dana", PASSWORD, practitioner_id=999)
    make_user(db, clinic)
    with pytest.raises(auth.EmailTaken, match="already exists"):
        auth.create_user(db, clinic.id, EMAIL.upper(), "Someone else", PASSWORD)
    assert count(db, StaffUser) == 1


def test_create_user_links_a_practitioner_of_the_same_clinic_only(db: Session, clinic: Clinic) -> None:
    other, _ = add_clinic(
        db, ClinicCreate(id="hillside", name="Hillside", email="desk@hillside.example"), actor="test", secret="s"
    )
    theirs = Practitioner(clinic_id=other.id, external_id="P-1", name="Pat")
    ours = Practitioner(clinic_id=clinic.id, external_id="P-7", name="Dana")
    db.add_all([theirs, ours])
    db.commit()
    with pytest.raises(auth.UnknownPractitioner):
        auth.create_user(db, clinic.id, EMAIL, "Dana", PASSWORD, practitioner_id=theirs.id)
    user = auth.create_user(db, clinic.id, EMAIL, "Dana", PASSWORD, practitioner_id=ours.id)
    assert user.practitioner_id == ours.id


# ---- login and lockout ----------------------------------------------------------------------------------


def test_authenticate_right_and_wrong(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    assert auth.authenticate(db, EMAIL, "wrong password here", now) is None
    assert db.get(StaffUser, user.id).failed_logins == 1  # type: ignore[union-attr]
    found = auth.authenticate(db, " DANA@riverside.example", PASSWORD, now)
    assert found is not None and found.id == user.id
    db.refresh(found)
    assert found.failed_logins == 0 and found.last_login_at == now
    assert [e.entity_id for e in audit_rows(db, "staff.login")] == [str(user.id)]
    [failed] = audit_rows(db, "staff.login_failed")
    assert failed.detail == {"reason": "password"}
    for event in db.exec(select(AuditEvent)).all():
        text = json.dumps(event.detail) + event.actor + event.entity_id
        assert "dana" not in text.lower() and PASSWORD not in text


def test_unknown_email_costs_one_scrypt_like_a_real_user(
    db: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user(db, clinic)
    auth._dummy_hash()  # made once per process, not part of a request
    real = auth._scrypt
    calls: list[int] = []

    def counting(*args: Any) -> bytes:
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(auth, "_scrypt", counting)
    assert auth.attempt_login(db, "nobody@riverside.example", PASSWORD, utcnow()).reason == "unknown"
    assert auth.attempt_login(db, EMAIL, "wrong password here", utcnow()).reason == "password"
    assert calls == [2**14, 2**14]
    [unknown, _] = audit_rows(db, "staff.login_failed")
    assert unknown.entity_id == "unknown" and "nobody" not in json.dumps(unknown.detail)


def test_failures_never_lock_the_account(db: Session, clinic: Clinic) -> None:
    """Strangers' wrong passwords must not keep the owner out: the web layer slows attempts down instead."""
    user = make_user(db, clinic)
    now = utcnow()
    for _ in range(25):
        assert auth.attempt_login(db, EMAIL, "wrong password here", now).reason == "password"
    db.refresh(user)
    assert user.failed_logins == 25 and user.locked_until is None
    assert auth.authenticate(db, EMAIL, PASSWORD, now) is not None
    db.refresh(user)
    assert user.failed_logins == 0
    assert audit_rows(db, "staff.locked") == []


def test_a_success_resets_the_failure_count(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    for _ in range(9):
        auth.authenticate(db, EMAIL, "wrong password here", now)
    assert auth.authenticate(db, EMAIL, PASSWORD, now) is not None
    auth.authenticate(db, EMAIL, "wrong password here", now)
    db.refresh(user)
    assert user.failed_logins == 1 and user.locked_until is None


def test_disabled_user_cannot_log_in_and_loses_sessions(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    token = auth.start_session(db, user, now)
    auth.disable_user(db, user, now)
    assert auth.attempt_login(db, EMAIL, PASSWORD, now).reason == "disabled"
    assert auth.session_user(db, token, now) is None
    assert count(db, WebSession) == 0


def test_set_password_unlocks_and_ends_sessions(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    token = auth.start_session(db, user, now)
    user.locked_until = now + timedelta(minutes=10)
    db.add(user)
    db.commit()
    auth.set_password(db, user, "a brand new passphrase")
    assert auth.session_user(db, token, now) is None
    assert auth.authenticate(db, EMAIL, PASSWORD, now) is None
    assert auth.authenticate(db, EMAIL, "a brand new passphrase", now) is not None


# ---- sessions -------------------------------------------------------------------------------------------


def test_only_the_hash_of_the_session_token_is_stored(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    token = auth.start_session(db, user, utcnow())
    assert len(token) >= 43
    [row] = db.exec(select(WebSession)).all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in row.token_hash
    assert auth.start_session(db, user, utcnow()) != token


def test_session_slides_until_idle_timeout(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    token = auth.start_session(db, user, now)
    assert auth.session_user(db, token, now + timedelta(hours=11)) is not None  # extends to +23 h
    found = auth.session_user(db, token, now + timedelta(hours=22))
    assert found is not None and found.id == user.id
    # 12 h and a second without a request: over.
    assert auth.session_user(db, token, now + timedelta(hours=34, seconds=1)) is None
    assert count(db, WebSession) == 0


def test_idle_session_expires(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    token = auth.start_session(db, user, now)
    assert auth.session_user(db, token, now + timedelta(hours=12)) is None


def test_session_ends_after_the_absolute_maximum_however_busy(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    token = auth.start_session(db, user, now)
    for hours in range(6, 24 * 7, 6):
        assert auth.session_user(db, token, now + timedelta(hours=hours)) is not None, hours
    assert auth.session_user(db, token, now + timedelta(days=7)) is None


def test_end_session_and_unknown_tokens(db: Session, clinic: Clinic) -> None:
    user = make_user(db, clinic)
    now = utcnow()
    token = auth.start_session(db, user, now)
    assert auth.session_user(db, "x" * 43, now) is None
    assert auth.session_user(db, None, now) is None
    assert auth.end_session(db, token) is True
    assert auth.session_user(db, token, now) is None
    assert auth.end_session(db, token) is False
    [logout] = audit_rows(db, "staff.logout")
    assert logout.entity_id == str(user.id) and logout.detail == {}


# ---- CSRF -----------------------------------------------------------------------------------------------


def test_csrf_token_is_bound_to_session_secret_and_purpose() -> None:
    token = auth.csrf_token(SECRET, "session-a")
    assert token == auth.csrf_token(SECRET, "session-a")
    assert token != auth.csrf_token(SECRET, "session-b")
    assert token != auth.csrf_token(SECRET + "x", "session-a")
    assert token != auth.csrf_token(SECRET, "session-a", purpose="login")
    assert "session-a" not in token and len(token) >= 43


def test_check_csrf() -> None:
    token = auth.csrf_token(SECRET, "session-a")
    assert auth.check_csrf(SECRET, "session-a", token)
    assert not auth.check_csrf(SECRET, "session-b", token)
    assert not auth.check_csrf(SECRET, "session-a", token[:-1])
    assert not auth.check_csrf(SECRET, "session-a", "")
    assert not auth.check_csrf(SECRET, "session-a", None)
    assert not auth.check_csrf(SECRET, None, token)
    assert not auth.check_csrf(SECRET, "session-a", "é" * 43)  # non-ASCII input is a mismatch, not a crash
    assert not auth.check_csrf(SECRET, "session-a", token, purpose="login")


def test_check_csrf_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.check_csrf(SECRET, "s", auth.csrf_token(SECRET, "s"))
    assert calls


# ---- CLI ------------------------------------------------------------------------------------------------

runner = CliRunner()


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


def add_args(*extra: str) -> list[str]:
    return [
        "staff",
        "add",
        "--clinic",
        "riverside-physio",
        "--email",
        "Dana@Riverside.example",
        "--name",
        "Dana",
        *extra,
    ]


def test_cli_add_from_stdin_then_list(env: Path) -> None:
    result = runner.invoke(cli_app, add_args("--password-stdin"), input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "added to clinic 'riverside-physio'" in result.output and PASSWORD not in result.output
    listed = runner.invoke(cli_app, ["staff", "list", "--clinic", "riverside-physio"])
    assert listed.exit_code == 0 and EMAIL in listed.output and "active" in listed.output
    assert "scrypt" not in listed.output
    with cli_db() as db:
        assert auth.authenticate(db, EMAIL, PASSWORD, utcnow()) is not None


def test_cli_add_prompts_twice_hidden(env: Path) -> None:
    result = runner.invoke(cli_app, add_args(), input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password" in result.output and "Repeat" in result.output and PASSWORD not in result.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (add_args(), f"{PASSWORD}\nsomething different\n", "differ"),
        (add_args("--password-stdin"), "short\n", "at least 12 characters"),
        (add_args("--practitioner", "P-404", "--password-stdin"), f"{PASSWORD}\n", "no practitioner 'P-404'"),
        (
            ["staff", "add", "--clinic", "nowhere", "--email", EMAIL, "--name", "D", "--password-stdin"],
            f"{PASSWORD}\n",
            "unknown clinic 'nowhere'",
        ),
        (
            ["staff", "add", "--clinic", "riverside-physio", "--email", "nope", "--name", "D", "--password-stdin"],
            f"{PASSWORD}\n",
            "email address",
        ),
    ],
)
def test_cli_add_refuses_bad_input_with_exit_2(env: Path, args: list[str], stdin: str, message: str) -> None:
    result = runner.invoke(cli_app, args, input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert PASSWORD not in result.output
    with cli_db() as db:
        assert count(db, StaffUser) == 0


def test_cli_unknown_clinic_fails_before_asking_for_a_password(env: Path) -> None:
    result = runner.invoke(cli_app, ["staff", "add", "--clinic", "nowhere", "--email", EMAIL, "--name", "D"])
    assert result.exit_code == 2 and "unknown clinic" in result.output and "Password" not in result.output


def test_cli_add_links_the_practitioner_by_external_id(env: Path) -> None:
    with cli_db() as db:
        db.add(Practitioner(clinic_id="riverside-physio", external_id="P-7", name="Dana Reyes"))
        db.commit()
    result = runner.invoke(cli_app, add_args("--practitioner", "P-7", "--password-stdin"), input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    with cli_db() as db:
        user = auth.find_user(db, EMAIL)
        practitioner = db.exec(select(Practitioner)).one()
        assert user is not None and user.practitioner_id == practitioner.id


def test_cli_duplicate_email_exit_2(env: Path) -> None:
    runner.invoke(cli_app, add_args("--password-stdin"), input=PASSWORD + "\n")
    again = runner.invoke(cli_app, add_args("--password-stdin"), input=PASSWORD + "\n")
    assert again.exit_code == 2 and "already exists" in again.output


def test_cli_passwd_and_disable(env: Path) -> None:
    runner.invoke(cli_app, add_args("--password-stdin"), input=PASSWORD + "\n")
    new = "another long passphrase"
    changed = runner.invoke(cli_app, ["staff", "passwd", "--email", EMAIL, "--password-stdin"], input=new + "\n")
    assert changed.exit_code == 0, changed.output
    assert new not in changed.output
    with cli_db() as db:
        assert auth.authenticate(db, EMAIL, PASSWORD, utcnow()) is None
        assert auth.authenticate(db, EMAIL, new, utcnow()) is not None
    weak = runner.invoke(cli_app, ["staff", "passwd", "--email", EMAIL, "--password-stdin"], input="short\n")
    assert weak.exit_code == 2 and "at least 12" in weak.output
    missing = runner.invoke(cli_app, ["staff", "passwd", "--email", "who@x.example", "--password-stdin"], input=new)
    assert missing.exit_code == 2 and "no staff user" in missing.output
    disabled = runner.invoke(cli_app, ["staff", "disable", "--email", EMAIL])
    assert disabled.exit_code == 0, disabled.output
    with cli_db() as db:
        assert auth.authenticate(db, EMAIL, new, utcnow()) is None
    listed = runner.invoke(cli_app, ["staff", "list", "--clinic", "riverside-physio"])
    assert "disabled" in listed.output
    assert runner.invoke(cli_app, ["staff", "disable", "--email", "who@x.example"]).exit_code == 2
