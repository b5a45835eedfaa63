"""`needlecare demo`: write a synthetic clinic's history by running a seeded cohort through the real pipeline.

The work is in ``needlecare.demo.simulation`` (what happens, and what happens on a re-run) and
``needlecare.demo.cohort`` (the synthetic patients). This module parses the options, shows progress and prints
counts — never a patient's name, email or answers."""

import math
import os
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from needlecare.demo.defaults import DEFAULT_SEED, DEMO_HISTORY_CLINIC_ID

if TYPE_CHECKING:  # the rest is imported when the command runs, so `needlecare --help` stays fast
    from sqlmodel import Session

    from needlecare.demo.simulation import DemoResult

# A clinic's year: 4 practitioners, 1,200 patients whose episodes start evenly over the last 51 weeks, so that
# most injury x time point cells of the dashboard reach the reporting minimum of 20 paired answers.
DEFAULT_PATIENTS = 1200
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)  # the patients are independent: one shard per core (2 here)
DEFAULT_WEEKS_BACK = 51
OLDEST_START = timedelta(days=360)  # ingest refuses sessions more than a year old


def demo(
    patients: Annotated[
        int, typer.Option("--patients", "-n", min=1, max=100_000, help="How many synthetic patients")
    ] = DEFAULT_PATIENTS,
    seed: Annotated[int, typer.Option(help="Seed of the generator: the same seed gives the same cohort")] = (
        DEFAULT_SEED
    ),
    clinic: Annotated[
        str,
        typer.Option(help="The demo's own clinic to fill (created if missing; never a clinic the demo did not create)"),
    ] = DEMO_HISTORY_CLINIC_ID,
    workers: Annotated[
        int, typer.Option(min=1, max=16, help="Worker processes that simulate shards of the patients side by side")
    ] = DEFAULT_WORKERS,
    start: Annotated[
        str | None,
        typer.Option(
            help="When the cohort's first episodes start: ISO 8601 (2026-08-17 or 2026-08-17T09:00:00Z), or "
            "weeks/days ago (14w, 90d). Episodes start evenly from then to now. Default: 51 weeks ago.",
        ),
    ] = None,
) -> None:
    """Write a clinic's year of synthetic history by running the real pipeline on a simulated clock.

    Sessions go through ingest and planning, check-ins are opened by the real dispatcher (quiet hours, one
    survey a day, superseding), and answers go through validation and the escalation rules, as of simulated
    times up to now, in a private database; the finished history is then copied into a clinic of its own
    (default demo-clinic), in final states only, so a running stack (make run) neither races it nor sends any
    of it. Patients are obviously fake (Demo Patient 0042, demo-0042@example.invalid). Nothing is sent.
    A clinic holds one demo history. Development databases only.
    """
    from pydantic import ValidationError
    from sqlmodel import Session

    from models.base import utcnow
    from needlecare.core import db as database
    from needlecare.core.settings import get_settings
    from needlecare.demo.clinic import DEMO_STAFF_PASSWORD, DemoRefused, demo_staff_email
    from needlecare.demo.cohort import generate_cohort
    from needlecare.demo.parallel import WorkerFailed
    from needlecare.demo.simulation import previous_run, run_demo

    settings = get_settings()
    if settings.env == "production":
        _fail("needlecare demo writes synthetic patients; it does not run with NEEDLECARE_ENV=production", 2)
    now = utcnow()
    database.upgrade()
    with Session(database.get_engine(), expire_on_commit=False) as db:
        earlier = previous_run(db, clinic)
        if earlier is not None:
            typer.echo(
                f"Clinic '{clinic}' already holds a demo history (seed {earlier.get('seed')}, "
                f"{earlier.get('patients')} patients, up to {str(earlier.get('until', '?'))[:10]}); nothing written. "
                "Choose another --clinic for a new one."
            )
            return
        began = _start(start, now)
        cohort = generate_cohort(
            patients, seed, start=began, span_days=(now - began).total_seconds() / 86400, spread="even"
        )
        typer.echo(
            f"Demo clinic '{clinic}': {patients} synthetic patients (seed {seed}) from {began:%Y-%m-%d} to now, "
            "simulated in a private database."
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
                result = run_demo(
                    db, cohort, settings=settings, clinic_id=clinic, until=now, progress=advance, workers=workers
                )
            except (DemoRefused, ValidationError, WorkerFailed) as exc:
                _fail(f"not run: {_reason(exc)}", 2)
        stored = _store_dashboard_figures(db, clinic)
    _report(result)
    typer.echo(stored)
    typer.echo(
        f"Log in at /dashboard as {demo_staff_email(clinic)} / {DEMO_STAFF_PASSWORD} (a development-only account)."
    )


def _store_dashboard_figures(db: "Session", clinic_id: str) -> str:
    """Precompute the dashboard's preset views of the demo clinic, so its first page shows figures at once."""
    from models.base import utcnow
    from needlecare.outcomes import store as report_store

    counts = report_store.refresh_standard_views(db, clinic_id, utcnow())
    return (
        f"Dashboard figures stored for {counts.stored} of {counts.views} preset view(s) in {counts.seconds:.1f} s"
        + (f" ({counts.failed} failed: `needlecare dashboard refresh` tries again)." if counts.failed else ".")
    )


def _start(given: str | None, now: datetime) -> datetime:
    """When the cohort's first episodes start."""
    if given is None:
        return (now - timedelta(weeks=DEFAULT_WEEKS_BACK)).replace(minute=0, second=0, microsecond=0)
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
    return began


def _report(result: "DemoResult") -> None:
    tiers = ", ".join(f"{tier} {count}" for tier, count in sorted(result.advice.items())) or "none"
    lines = [
        f"Done in {result.seconds:.1f} s.",
        f"  sessions    {result.sessions_recorded} recorded, {result.sessions_to_come} still to come"
        + (f", {result.sessions_rejected} refused" if result.sessions_rejected else ""),
        f"  check-ins   {result.contacts_opened} opened, {result.contacts_skipped} skipped by the dispatcher "
        f"(superseded, one survey a day, window closed, no consent), {result.checks_left_out} still planned or "
        "open now (left out)",
        f"  answers     {result.answers_recorded} recorded, {result.answers_late} arrived too late, "
        f"{result.answers_after_until} still to come",
        f"  red flags   {result.red_flags} answers report one",
        f"  rules       {tiers}; {result.cases_opened} escalation cases opened, {result.missed_evaluated} missed "
        f"safety checks evaluated, {result.cases_resolved} cases resolved by the demo",
        f"  outbox      {result.messages_not_sent} patient messages and {result.alerts_not_sent} practitioner alerts "
        "written as skipped (demo history: not sent)",
        f"  copied      {result.rows_copied} rows into clinic '{result.clinic_id}' in {result.copy_seconds:.1f} s, all "
        "in final states: a running stack has nothing of the demo's to send, skip or expire",
    ]
    refused = result.answers_refused + result.answers_closed
    if refused:
        lines.append(f"  note        {refused} planned answers were refused (see needlecare/demo/answering.py)")
    typer.echo("\n".join(lines))


def _reason(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
    return str(exc)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
