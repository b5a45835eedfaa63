"""`needlecare protocols …`: validate the follow-up protocol packs and show an injury's calendar."""

from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from needlecare.core.settings import get_settings
from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.protocols import PROTOCOLS_DIR, ProtocolError, load_protocols

protocols_app = typer.Typer(
    rich_markup_mode=None,
    help="Follow-up protocol packs (protocols/*.toml and a clinic's override directory).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Override directory to validate with the shipped packs; default: NEEDLECARE_PROTOCOLS_DIR",
        file_okay=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load(override_dir: Path | None) -> dict[str, Protocol]:
    try:
        return load_protocols(PROTOCOLS_DIR, override_dir)
    except ProtocolError as exc:
        _fail("\n".join(exc.problems), 1)


@protocols_app.command("check")
def check(override_dir: DirOption = None) -> None:
    """Validate every pack (shipped plus overrides); one line per injury, exit 1 on any problem."""
    override_dir = override_dir or get_settings().protocols_dir
    protocols = _load(override_dir)
    for slug, protocol in protocols.items():
        override = override_dir / f"{slug}.toml" if override_dir is not None else None
        where = f"  (override: {override})" if override is not None and override.is_file() else ""
        typer.echo(f"ok  {slug}  v{protocol.version}  {len(protocol.steps)} steps{where}")


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"unknown time zone '{name}'; use an IANA name such as Europe/London") from None


def _start(value: str | None, zone: tzinfo) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not an ISO date-time, e.g. 2026-11-22T17:30") from None
    aware = parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed
    return aware.astimezone(UTC)  # add hours in UTC: elapsed time, right across daylight-saving changes


def _when(start: datetime, hours: float, zone: tzinfo) -> str:
    return (start + timedelta(hours=hours)).astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def _hours(hours: float) -> str:
    return f"{hours:g} h" if hours < 48 or hours % 24 else f"{hours / 24:g} d"


def _step_lines(step: Step, start: datetime, zone: tzinfo) -> list[str]:
    flags = [step.scope, "safety" if step.safety else "response"]
    if step.skip_if_next_session_before_due:
        flags.append("skipped if the next session comes before it is due")
    lines = [
        f"{step.id}  {step.title}  [{', '.join(flags)}]",
        f"  send       {_when(start, step.offset_hours, zone)}  (+{_hours(step.offset_hours)})",
        f"  window     {_when(start, step.window_start_hours, zone)}  to  {_when(start, step.window_end_hours, zone)}",
    ]
    reminders = [
        f"{_when(start, step.offset_hours + r, zone)} (+{_hours(r)} after sending)" for r in step.reminder_hours
    ]
    lines.append(f"  reminders  {'; '.join(reminders) if reminders else 'none'}")
    lines.append(f"  questions  {', '.join(step.questions)}")
    if step.groc_anchor:
        lines.append(f"  GROC vs    {step.groc_anchor}")
    return lines


@protocols_app.command("show")
def show(
    injury: Annotated[str, typer.Argument(help="Injury slug, e.g. achilles_tendinopathy")],
    start: Annotated[
        str | None,
        typer.Option(help="When the session was completed (ISO date-time; without an offset: in --timezone)"),
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone to print times in")] = "UTC",
    override_dir: DirOption = None,
) -> None:
    """Print the follow-up calendar of one injury for a session completed at --start (default now)."""
    zone = _zone(timezone)
    started = _start(start, zone)
    protocols = _load(override_dir or get_settings().protocols_dir)
    protocol = protocols.get(injury)
    if protocol is None:
        _fail(f"unknown injury '{injury}'; allowed: {', '.join(sorted(protocols))}", 2)
    lines = [
        f"{protocol.name} ({protocol.injury})  v{protocol.version}",
        f"session completed {started.astimezone(zone).strftime('%a %Y-%m-%d %H:%M %Z')}; episode steps assume the "
        "episode started with this session. Times are before any quiet-hours shift.",
    ]
    rom = protocol.rom_test
    if rom is None:
        lines.append("ROM self-test: none")
    else:
        lines.append(
            f"ROM self-test: {rom.name} ({rom.measure}, {rom.min:g}-{rom.max:g} {rom.unit}, step {rom.step:g})"
        )
        lines.append(f"  how to: {rom.how_to}")
    for step in protocol.steps:
        lines.append("")
        lines.extend(_step_lines(step, started, zone))
    typer.echo("\n".join(lines))
