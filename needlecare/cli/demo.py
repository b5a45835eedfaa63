"""`needlecare demo`: seed a synthetic clinic by running a seeded cohort through the real pipeline.

The work is in ``needlecare.demo.simulation`` (what happens, and what happens on a re-run) and
``needlecare.demo.cohort`` (the synthetic patients). This module parses the options, shows progress and prints
counts — never a patient's name, email or answers."""

import math
import re
from datetime import datetime, timedelta
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from sqlmodel import Session

from models.base import utcnow
from needlecare.core import db as database
from needlecare.core.settings import get_settings
from needlecare.demo.clinic import DemoRefused
from needlecare.demo.cohort import DEFAULT_SEED, generate_cohort
from needlecare.demo.simulation import DemoResult, previous_run, run_demo
from needlecare.intake.sample import DEMO_CLINIC_ID
from needlecare.outcomes import store as report_store

# Sized so the whole command (start-up, migrations, simulation) takes about 30 s on the 2-core development
# machine (28 s measured on 2026-11-22, SQLite); about 0.25-0.35 s per patient.
DEFAULT_PATIENTS = 100
DEFAULT_WEEKS_BACK = 14  # so the earliest episodes reach their 12-week outcome survey
OLDEST_START = timedelta(days=300)  # ingest refuses sessions more than a year old


def demo(
    patients: Annotated[
        int, typer.Option("--patients", "-n", min=1, max=100_000, help="How many synthetic patients")
    ] = DEFAULT_PATIENTS,
    seed: Annotated[int, typer.Option(help="Seed of the generator: the same seed gives the same cohort")] = (
        DEFAULT_SEED
    ),
    clinic: Annotated[str, typer.Option(help="Clinic to fill (created if missing)")] = DEMO_CLINIC_ID,
    start: Annotated[
        str | None,
        typer.Option(
            help="When the cohort's first episodes start: ISO 8601 (2026-08-17 or 2026-08-17T09:00:00Z), or "
            "weeks/days ago (14w, 90d). Default: 14 weeks ago, or the start of the earlier run "
            "on this clinic (so a re-run lines up with what is stored).",
        ),
    ] = None,
) -> None:
    """Fill a clinic with a realistic synthetic cohort by running the real pipeline on a simulated clock.

    Sessions go through ingest and planning, check-ins are opened by the real dispatcher (quiet hours, one
    survey a day, superseding), and answers go through validation and the escalation rules, as of simulated
    times up to now. Patients are obviously fake (Demo Patient 0042, demo-0042@example.invalid). Messages are
    queued in the outbox, not sent. Running it again duplicates nothing. Development databases only.
    """
    settings = get_settings()
    if settings.env == "production":
        _fail("needlecare demo writes synthetic patients; it does not run with NEEDLECARE_ENV=production", 2)
    now = utcnow()
    database.upgrade()
    with Session(database.get_engine(), expire_on_commit=False) as db:
        began, note = _start(db, start, clinic, seed, now)
        cohort = generate_cohort(patients, seed, start=began)
        typer.echo(
            f"Demo clinic '{clinic}': {patients} synthetic patients (seed {seed}) from {began:%Y-%m-%d} to now{note}."
        )
        first = min((p.episode_start for p in cohort), default=now)
        hours = max(1, math.ceil((now - first).total_seconds() / 3600))
        with typer.progressbar(length=hours, label="Simulating the clinic", show_eta=True) as bar:
            done = 0

            def advance(clock: datetime) -> None:
                """The bar counts simulated hours."""
                nonlocal done
                reached = min(hours, max(done, int((clock - first).total_seconds() // 3600)))
                bar.update(reached - done)
                done = reached

            try:
                result = run_demo(db, cohort, settings=settings, clinic_id=clinic, until=now, progress=advance)
            except (DemoRefused, ValidationError) as exc:
                _fail(f"not run: {_reason(exc)}", 2)
        stored = _store_dashboard_figures(db, clinic)
    _report(result)
    typer.echo(stored)


def _store_dashboard_figures(db: Session, clinic_id: str) -> str:
    """Precompute the dashboard's preset views of the demo clinic, so its first page shows figures at once."""
    counts = report_store.refresh_standard_views(db, clinic_id, utcnow())
    return (
        f"Dashboard figures stored for {counts.stored} of {counts.views} preset view(s) in {counts.seconds:.1f} s"
        + (f" ({counts.failed} failed: `needlecare dashboard refresh` tries again)." if counts.failed else ".")
    )


def _start(db: Session, given: str | None, clinic: str, seed: int, now: datetime) -> tuple[datetime, str]:
    """The cohort start and a note on where it came from."""
    earlier = previous_run(db, clinic)
    if earlier is not None and earlier.get("seed") != seed:
        # The same external ids (DEMO-0042) would mean different patients: refuse rather than mix two cohorts.
        _fail(
            f"clinic '{clinic}' already holds the demo cohort of seed {earlier.get('seed')}; "
            f"run with --seed {earlier.get('seed')} to extend it, or choose another --clinic",
            2,
        )
    if given is None:
        if earlier is not None and isinstance(earlier.get("start"), str):
            return datetime.fromisoformat(earlier["start"]), " (the start of the earlier run on this clinic)"
        return (now - timedelta(weeks=DEFAULT_WEEKS_BACK)).replace(minute=0, second=0, microsecond=0), ""
    relative = re.fullmatch(r"(\d+)([wd])", given.strip())
    if relative:
        amount = int(relative.group(1))
        began = now - (timedelta(weeks=amount) if relative.group(2) == "w" else timedelta(days=amount))
    else:
        try:
            began = datetime.fromisoformat(given.strip().replace("Z", "+00:00"))
        except ValueError:
            _fail(f"--start: '{given}' is not an ISO 8601 date or time (2026-08-17T09:00:00Z) nor <n>w / <n>d", 2)
        if began.tzinfo is None:
            began = began.replace(tzinfo=now.tzinfo)  # a date or a time without offset: UTC
    if began >= now:
        _fail("--start must be in the past: the demo only simulates what has already happened", 2)
    if began < now - OLDEST_START:
        _fail(f"--start must be within the last {OLDEST_START.days} days (ingest refuses sessions over a year old)", 2)
    return began, ""


def _report(result: DemoResult) -> None:
    tiers = ", ".join(f"{tier} {count}" for tier, count in sorted(result.advice.items())) or "none"
    lines = [
        f"Done in {result.seconds:.1f} s.",
        f"  sessions    {result.sessions_recorded} recorded, {result.sessions_already} already recorded earlier, "
        f"{result.sessions_to_come} still to come"
        + (f", {result.sessions_rejected} refused" if result.sessions_rejected else ""),
        f"  check-ins   {result.contacts_opened} opened, {result.contacts_skipped} skipped by the dispatcher "
        f"(superseded, one survey a day, window closed, no consent)",
        f"  answers     {result.answers_recorded} recorded, {result.answers_late} arrived too late, "
        f"{result.answers_after_until} still to come",
        f"  red flags   {result.red_flags} answers report one",
        f"  rules       {tiers}; {result.cases_opened} escalation cases opened",
        f"  outbox      {result.messages_queued} patient messages and {result.alerts_queued} practitioner alerts "
        "queued, not sent",
    ]
    refused = result.answers_refused + result.answers_closed
    if refused:
        lines.append(f"  note        {refused} planned answers were refused (see needlecare/demo.py)")
    lines.append(
        "The next outbox pass (make run) skips queued messages whose check-in was answered or has closed, and "
        "sends the rest to the demo-NNNN@example.invalid addresses (the local mail capture in development)."
    )
    typer.echo("\n".join(lines))


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
    return str(exc)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
