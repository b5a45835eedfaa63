"""`needlecare staff …`: add, list, re-password and disable the staff users who log in to the staff pages.

Passwords are read hidden (twice) from the terminal, or from standard input with --password-stdin (first
line, for scripts); they are never echoed or printed, and short or common ones are refused. ``--totp`` (on
``add``, or ``staff totp`` later) turns on a TOTP second factor and prints its provisioning URI once: add it to
an authenticator app (it is not stored anywhere else to be shown again). Bad input exits with code 2 and says
what to fix.
"""

import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:  # imported inside the commands, so `needlecare --help` stays fast
    from sqlmodel import Session

    from models import StaffUser

staff_app = typer.Typer(
    rich_markup_mode=None, help="Staff users who log in to the practitioner pages.", no_args_is_help=True
)

ClinicOption = Annotated[str, typer.Option("--clinic", help="Clinic id (see `needlecare clinic list`)")]
EmailOption = Annotated[str, typer.Option("--email", help="Login email of the staff user")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input")
]
TotpOption = Annotated[
    bool,
    typer.Option("--totp", help="Also ask for a code from an authenticator app at login (prints its setup URI once)"),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _db() -> "Session":
    from sqlmodel import Session

    from needlecare.core import db as database

    database.upgrade()
    return Session(database.get_engine(), expire_on_commit=False)


def _read_password(from_stdin: bool) -> str:
    """A new password, checked for strength before anything is stored."""
    from needlecare.staff import auth

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        first = typer.prompt("Password", hide_input=True)
        second = typer.prompt("Repeat the password", hide_input=True)
        if first != second:
            _fail("the two passwords differ; nothing was changed")
        password = first
    try:
        auth.check_password_strength(password)
    except auth.WeakPassword as exc:
        _fail(f"{exc}; nothing was changed")
    return password


def _enable_totp(db: "Session", user: "StaffUser") -> None:
    from needlecare.staff import totp

    secret = totp.new_totp_secret()
    totp.enable_totp(db, user, secret)
    typer.echo("Second factor on. Add this URI to the user's authenticator app now (or make a QR code of it);")
    typer.echo("it is shown only this once:")
    typer.echo(totp.totp_uri(user, secret))


def _user(db: "Session", email: str) -> "StaffUser":
    from needlecare.staff import auth

    user = auth.find_user(db, email)
    if user is None:
        _fail("no staff user with this email; see `needlecare staff list --clinic ID`")
    return user


@staff_app.command("add")
def add(
    clinic: ClinicOption,
    email: EmailOption,
    name: Annotated[str, typer.Option("--name", help="Name shown on the staff pages")],
    practitioner: Annotated[
        str | None,
        typer.Option("--practitioner", help="The practitioner's id in the clinic's own system (as in events)"),
    ] = None,
    password_stdin: PasswordStdin = False,
    with_totp: TotpOption = False,
) -> None:
    """Add a staff user to a clinic (asks for the password twice, hidden)."""
    from sqlmodel import select

    from models import Practitioner
    from needlecare.staff import auth

    with _db() as db:
        practitioner_id = None
        if practitioner is not None:
            found = db.exec(
                select(Practitioner).where(Practitioner.clinic_id == clinic, Practitioner.external_id == practitioner)
            ).first()
            if found is None:
                _fail(
                    f"clinic '{clinic}' has no practitioner '{practitioner}' yet "
                    "(practitioners appear with their first recorded session); leave out --practitioner"
                )
            practitioner_id = found.id
        try:
            auth.check_new_user(db, clinic, email, name, practitioner_id)  # before asking for a password
        except auth.AuthError as exc:
            _fail(str(exc))
        password = _read_password(password_stdin)
        try:
            user = auth.create_user(db, clinic, email, name, password, practitioner_id)
        except auth.AuthError as exc:
            _fail(str(exc))
        typer.echo(f"staff user {user.id} ({user.email}) added to clinic '{clinic}'.")
        if with_totp:
            _enable_totp(db, user)


@staff_app.command("list")
def list_users(clinic: ClinicOption) -> None:
    """List a clinic's staff users (never their passwords)."""
    from sqlmodel import select

    from models import StaffUser
    from models.base import utcnow

    with _db() as db:
        users = db.exec(select(StaffUser).where(StaffUser.clinic_id == clinic).order_by(StaffUser.email)).all()
    if not users:
        typer.echo(f"no staff users in clinic '{clinic}': add one with `needlecare staff add`")
    now = utcnow()
    for user in users:
        if user.disabled_at is not None:
            state = "disabled"
        elif user.locked_until is not None and user.locked_until > now:
            state = f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
        else:
            state = "active"
        last = f"{user.last_login_at:%Y-%m-%d %H:%M} UTC" if user.last_login_at else "never logged in"
        typer.echo(f"{user.id}\t{user.email}\t{user.name}\t{state}\t{last}")


@staff_app.command("passwd")
def passwd(email: EmailOption, password_stdin: PasswordStdin = False) -> None:
    """Set a new password (also unlocks the account and logs it out everywhere)."""
    from needlecare.staff import auth

    with _db() as db:
        user = _user(db, email)
        password = _read_password(password_stdin)
        auth.set_password(db, user, password)
    typer.echo(f"password of staff user {user.id} changed; their sessions were ended.")


@staff_app.command("totp")
def totp_command(
    email: EmailOption,
    off: Annotated[bool, typer.Option("--off", help="Turn the second factor off instead")] = False,
) -> None:
    """Turn on a TOTP second factor (a new secret; prints its setup URI once) or, with --off, turn it off."""
    from needlecare.staff import totp

    with _db() as db:
        user = _user(db, email)
        if off:
            totp.disable_totp(db, user)
            typer.echo(f"second factor of staff user {user.id} turned off.")
            return
        _enable_totp(db, user)


@staff_app.command("disable")
def disable(email: EmailOption) -> None:
    """Stop a staff user from logging in and end their sessions."""
    from models.base import utcnow
    from needlecare.staff import auth

    with _db() as db:
        user = _user(db, email)
        auth.disable_user(db, user, utcnow())
    typer.echo(f"staff user {user.id} disabled; their sessions were ended.")
