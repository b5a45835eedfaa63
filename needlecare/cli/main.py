"""The `needlecare` command line (Typer). Every command validates input and says how to fix it."""

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from needlecare.cli.clinic_sms import clinic_sms
from needlecare.cli.dashboard import dashboard_app
from needlecare.cli.demo import demo
from needlecare.cli.export import export_app
from needlecare.cli.protocols import protocols_app
from needlecare.cli.report import report
from needlecare.cli.staff import staff_app

if TYPE_CHECKING:
    from sqlmodel import Session

# Commands import the database, models and Prefect inside their bodies: `needlecare --help` and the commands
# that need none of them start in a fraction of a second.

app = typer.Typer(
    rich_markup_mode=None,  # plain Click help: no "<bool>" after flags, wrapped at word boundaries
    help="needlecare: follow-up after dry needling for runners' injuries.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
clinic_app = typer.Typer(rich_markup_mode=None, help="Register and list clinics.", no_args_is_help=True)
session_app = typer.Typer(rich_markup_mode=None, help="Record completed sessions.", no_args_is_help=True)
db_app = typer.Typer(rich_markup_mode=None, help="Application database schema.", no_args_is_help=True)
app.add_typer(clinic_app, name="clinic")
app.add_typer(session_app, name="session")
app.add_typer(db_app, name="db")
app.add_typer(protocols_app, name="protocols")
app.add_typer(staff_app, name="staff")
app.add_typer(export_app, name="export")
app.add_typer(dashboard_app, name="dashboard")
clinic_app.command("sms")(clinic_sms)
app.command("demo")(demo)
app.command("report")(report)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _db() -> "Session":
    """A session on an up-to-date schema (migrating first is idempotent and quick)."""
    from sqlmodel import Session

    from needlecare.core import db as database

    database.upgrade()
    return Session(database.get_engine(), expire_on_commit=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the application database to the newest schema."""
    from needlecare.core import db as database
    from needlecare.core.settings import get_settings

    database.upgrade()
    typer.echo(f"database is up to date: {get_settings().resolved_database_url.split('@')[-1]}")


@clinic_app.command("add")
def clinic_add(
    clinic_id: Annotated[str, typer.Argument(help="Slug the clinic's integration sends, e.g. riverside-physio")],
    name: Annotated[str, typer.Option(help="The clinic's name as patients know it")],
    email: Annotated[str, typer.Option(help="The clinic's contact email, shown to patients")],
    phone: Annotated[str | None, typer.Option(help="The clinic's phone number, shown to patients")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the clinic")] = "UTC",
    region: Annotated[
        str | None, typer.Option(help="Two-letter country code used to read local phone numbers, e.g. GB")
    ] = None,
) -> None:
    """Register a clinic and print its webhook secret (shown once: store it in the clinic's system)."""
    from pydantic import ValidationError

    from models import ClinicCreate
    from needlecare.intake.clinics import ClinicExists, add_clinic

    try:
        data = ClinicCreate.model_validate(
            {
                "id": clinic_id,
                "name": name,
                "email": email,
                "phone": phone,
                "timezone": timezone,
                "region": region.strip().upper() if region else None,
            }
        )
    except ValidationError as exc:
        _fail(
            "\n".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
            ),
            2,
        )
        return
    with _db() as db:
        try:
            _, secret = add_clinic(db, data, actor="cli")
        except ClinicExists as exc:
            _fail(f"{exc}; choose another id, or use the secret you were given when it was added.")
            return
    typer.echo(f"clinic '{clinic_id}' added.\nwebhook secret (shown once): {secret}")


@clinic_app.command("list")
def clinic_list() -> None:
    """List registered clinics (never their secrets)."""
    from sqlmodel import select

    from models import Clinic

    with _db() as db:
        clinics = db.exec(select(Clinic).order_by(Clinic.id)).all()
    if not clinics:
        typer.echo("no clinics yet: add one with `needlecare clinic add`")
    for c in clinics:
        typer.echo(f"{c.id}\t{c.name}\t{c.email}\t{c.timezone}")


@clinic_app.command("configure")
def clinic_configure(
    clinic_id: Annotated[str, typer.Argument(help="The clinic's id")],
    file: Annotated[Path, typer.Option("--file", "-f", help="TOML file: alert routes, SLAs, opening hours")],
) -> None:
    """Set a clinic's alert routes (Apprise URLs with tags), SLAs and opening hours from a TOML file.

    The file is checked in full before anything is stored; see needlecare/clinic_config.py for the format.
    """
    from models import AuditEvent, Clinic
    from needlecare.outcomes import store as report_store
    from needlecare.safety.clinic_config import ClinicConfigError, load_config_file, to_stored

    try:
        config = load_config_file(file)
    except ClinicConfigError as exc:
        _fail(f"not stored:\n{exc}", 2)
        return
    with _db() as db:
        clinic = db.get(Clinic, clinic_id)
        if clinic is None:
            _fail(f"no clinic '{clinic_id}'; see `needlecare clinic list`", 2)
            return
        clinic.config = to_stored(config)
        db.add(clinic)
        db.add(AuditEvent(actor="cli", action="clinic.configured", entity="clinic", entity_id=clinic_id))
        cleared = report_store.forget(db, clinic_id)  # figures suppressed under the old [reporting] rules
        db.commit()
    routes = ", ".join(f"{len(r.tags)} tag(s) -> {r.url.split(':', 1)[0]}://…" for r in config.alerts) or "clinic email"
    typer.echo(f"clinic '{clinic_id}' configured: alerts to {routes}; SLA {config.sla.model_dump()}")
    if cleared:
        typer.echo(f"{cleared} stored dashboard view(s) cleared: the dashboard computes them again with these rules")


@clinic_app.command("show-config")
def clinic_show_config(clinic_id: Annotated[str, typer.Argument(help="The clinic's id")]) -> None:
    """Print a clinic's effective config (defaults filled in; URL credentials hidden)."""
    from models import Clinic
    from needlecare.safety.clinic_config import config_of, to_stored

    with _db() as db:
        clinic = db.get(Clinic, clinic_id)
        if clinic is None:
            _fail(f"no clinic '{clinic_id}'; see `needlecare clinic list`", 2)
            return
        stored = to_stored(config_of(clinic.config))
    for route in stored["alerts"]:
        route["url"] = re.sub(r"//[^/@]*@", "//***@", route["url"])
    typer.echo(json.dumps(stored, indent=2))


@clinic_app.command("rotate-secret")
def clinic_rotate_secret(
    clinic_id: Annotated[str, typer.Argument(help="The clinic's id")],
    finish: Annotated[
        bool, typer.Option("--finish", help="End the rotation: stop accepting the previous secret now")
    ] = False,
    old_valid_hours: Annotated[
        float | None,
        typer.Option(
            "--old-valid-hours",
            min=0.01,
            max=24 * 90,
            help="Stop accepting the previous secret after this many hours (default: until --finish)",
        ),
    ] = None,
) -> None:
    """Give a clinic a new webhook secret without refusing any event: the new one becomes primary (printed once)
    and the old one stays valid until `--finish` or `--old-valid-hours`, so its system can switch over."""
    from models.base import utcnow
    from needlecare.intake.clinics import RotationError, finish_rotation, rotate_secret

    if finish and old_valid_hours is not None:
        _fail("--finish ends a rotation; --old-valid-hours belongs to starting one: give one of them", 2)
        return
    now = utcnow()
    until = now + timedelta(hours=old_valid_hours) if old_valid_hours is not None else None
    with _db() as db:
        try:
            if finish:
                finish_rotation(db, clinic_id, actor="cli")
                typer.echo(f"clinic '{clinic_id}': rotation finished; only the new secret is accepted now.")
                return
            rotation = rotate_secret(db, clinic_id, actor="cli", now=now, previous_valid_until=until)
        except RotationError as exc:
            _fail(str(exc), 2)
            return
    ends = (
        f"until {until.isoformat(timespec='minutes')}"
        if until
        else f"until `needlecare clinic rotate-secret {clinic_id} --finish`"
    )
    typer.echo(
        f"clinic '{clinic_id}': new webhook secret (shown once): {rotation.new_secret}\n"
        f"Events signed with either secret are accepted {ends}."
    )


@clinic_app.command("sign")
def clinic_sign(
    clinic_id: Annotated[str, typer.Argument(help="The clinic's id")],
    file: Annotated[Path, typer.Option("--file", "-f", help="The exact body that will be sent")],
) -> None:
    """Print an X-Needlecare-Signature value for a body, signed now with the clinic's primary secret (valid for
    NEEDLECARE_WEBHOOK_TOLERANCE_SECONDS): for trying the HTTP API by hand, e.g. with curl."""
    from models import Clinic
    from needlecare.core.settings import get_settings
    from needlecare.core.signing import sign
    from needlecare.intake.clinics import webhook_secret

    try:
        body = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
        return
    with _db() as db:
        clinic = db.get(Clinic, clinic_id)
        if clinic is None:
            _fail(f"no clinic '{clinic_id}'; see `needlecare clinic list`", 2)
            return
        typer.echo(sign(body, webhook_secret(clinic, get_settings())))


@session_app.command("complete")
def session_complete(
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="JSON file with the session-completed body; - for stdin", allow_dash=True),
    ],
) -> None:
    """Record a completed session from a JSON file (same contract and checks as the HTTP API)."""
    from needlecare.core import events
    from needlecare.intake import ingest

    events.use_http_for_this_process()  # one POST; importing Prefect would add seconds to the command
    try:
        raw = typer.get_binary_stream("stdin").read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
        return
    with _db() as db:
        try:
            data = ingest.parse_json(raw)
            clinic = ingest.find_clinic(db, data)
            body = ingest.validate(data, region=clinic.region)
        except ingest.InvalidSession as exc:
            lines = [f"  {'.'.join(map(str, p.loc)) or '(body)'}: {p.msg}" for p in exc.problems]
            _fail(f"{file}: not accepted:\n" + "\n".join(lines), 2)
            return
        result = ingest.record_and_emit(db, body, actor="cli")
    if result.created and not events.prefect_api_reachable():
        typer.echo(
            f"session {result.session_id} accepted and stored, but the Prefect API at "
            f"{events.configured_prefect_api_url()} is not answering (is `make run` up?): its event was not "
            "delivered. The aftercare notice goes out with the next dispatch pass once the stack runs."
        )
    elif result.created:
        typer.echo(f"session {result.session_id} accepted; the aftercare notice is on its way.")
    else:
        typer.echo(f"session {result.session_id} was already recorded (duplicate); nothing is sent twice.")


@session_app.command("sample")
def session_sample(
    out: Annotated[Path | None, typer.Option(help="Write here instead of printing")] = None,
    clinic: Annotated[
        str | None, typer.Option(help="Clinic id to put in the sample (default: the demo clinic, riverside-physio)")
    ] = None,
) -> None:
    """Print a sample session-completed body with a fresh session id."""
    from needlecare.intake.sample import DEMO_CLINIC_ID, sample_bytes

    body = sample_bytes(clinic_id=clinic or DEMO_CLINIC_ID)
    if out is None:
        typer.echo(body.decode())
    else:
        out.write_bytes(body)
        typer.echo(f"wrote {out}")


@app.command("dispatch")
def dispatch_once(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="WHEN",
            help="Run the pass as of this time: ISO 8601 with offset (2026-11-23T09:00:00Z), relative to "
            "now (+24h, +3d), or 'next': when the next planned check-in can go (its due time, past the "
            "patient's quiet hours). Default: now.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (for scripts) instead of text")
    ] = False,
) -> None:
    """One pass in this process: plan new sessions, open due follow-ups, send what is due; re-alert the
    backup for cases past their SLA, evaluate missed safety checks (R13) and send due practitioner alerts."""
    from dataclasses import asdict

    from models.base import utcnow
    from needlecare.core.settings import get_settings
    from needlecare.followup.dispatch import next_due
    from needlecare.followup.outbox import run_pass
    from needlecare.followup.planning import plan_all
    from needlecare.safety import alerts, escalation

    now = utcnow()
    relative = re.fullmatch(r"\+(\d+(?:\.\d+)?)([hd])", as_of or "")
    if relative:
        amount = float(relative.group(1))
        now += timedelta(hours=amount) if relative.group(2) == "h" else timedelta(days=amount)
    elif as_of is not None and as_of != "next":
        try:
            now = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            _fail(f"--as-of: '{as_of}' is not an ISO 8601 time (2026-11-23T09:00:00Z), +<n>h / +<n>d, nor 'next'", 2)
        if now.tzinfo is None:
            _fail("--as-of: include a time zone offset, e.g. 2026-11-23T09:00:00Z or +01:00", 2)
    settings = get_settings()
    with _db() as db:
        if as_of == "next":
            plan_all(db, now=utcnow())  # new sessions' check-ins count too
            found = next_due(db, after=utcnow(), settings=settings)
            if found is None:
                typer.echo("No check-in is planned after now: nothing to dispatch ahead of time.")
                return
            now = found
        result = run_pass(db, now=now, settings=settings)
        swept = escalation.sweep(db, now=now)
        sent = alerts.send_due(db, now=now, settings=settings)
    summary = {**result.summary(), **asdict(swept), **{f"alerts_{k}": v for k, v in asdict(sent).items()}}
    if as_json:
        notes = [{**asdict(n), "until": n.until.isoformat() if n.until else None} for n in result.notes]
        typer.echo(json.dumps({"as_of": now.isoformat(), **summary, "notes": notes}))
        return
    typer.echo(dispatch_summary(now, result, summary))


def dispatch_summary(now: datetime, result: Any, summary: dict[str, int]) -> str:
    """The pass in words: what was sent, and for every message not sent, why and when it will go."""
    from needlecare.core import clock

    lines = [f"Dispatch pass as of {now:%a %d %b %Y %H:%M} UTC"]
    lines.append(
        f"  sent {summary['sent']} message(s); opened {summary['opened']} check-in(s); "
        f"planned {summary['planned']} new session(s)"
    )
    for note in result.notes:
        when = ""
        if note.until is not None:
            local = clock.local(note.until, note.timezone)
            when = f" until {local:%H:%M, %a %d %b} ({note.timezone})"
        lines.append(f"  {note.action}: {note.what}: {note.reason}{when}")
    if not result.notes and summary["sent"] == 0 and summary["opened"] == 0:
        lines.append("  nothing was due at this time")
    lines.append(
        f"  alerts: sent {summary['alerts_sent']}, retrying {summary['alerts_retried']}, "
        f"failed {summary['alerts_failed']}; backup re-alerts {summary['realerted']}"
    )
    return "\n".join(lines)


@app.command("run")
def run_stack() -> None:
    """Start everything on 127.0.0.1 (development): Prefect server, flows, web app, mail capture."""
    from needlecare.core.settings import get_settings
    from needlecare.dev.stack import Say, run

    raise typer.Exit(run(get_settings(), Say()))


@app.command("web")
def web() -> None:
    """Run only the web app (production: put it behind a TLS proxy)."""
    import uvicorn

    from needlecare.core.settings import get_settings

    settings = get_settings()
    uvicorn.run("needlecare.web.app:app_from_env", factory=True, host=settings.web_host, port=settings.web_port)


@app.command("serve-flows")
def serve_flows() -> None:
    """Serve the flows of deploy/prefect.yaml with their triggers and schedules."""
    from flows.serve import main

    main()


if __name__ == "__main__":
    app()
