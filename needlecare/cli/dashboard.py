"""`needlecare dashboard refresh`: precompute the dashboard's figures now (what the
``refresh-dashboard-figures`` deployment does every 15 minutes).

Prints one line per view with the seconds it took. An unknown clinic exits with code 2 (listing the known
ones); a view that fails is reported and the command exits with 1 after the others ran. The statistics are
imported inside the command, so other commands start fast.
"""

from typing import Annotated, NoReturn

import typer

dashboard_app = typer.Typer(
    rich_markup_mode=None, help="The practitioner dashboard's stored figures.", no_args_is_help=True
)


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@dashboard_app.command("refresh")
def refresh(
    clinic: Annotated[
        str | None,
        typer.Option("--clinic", help="Only this clinic (an id, e.g. riverside-physio); default: every clinic"),
    ] = None,
) -> None:
    """Compute and store the dashboard's figures: every preset period (all time, 12 months, 90 and 30 days),
    all injuries, all practitioners. Pages then read them instead of computing."""
    from sqlmodel import Session

    from models.base import utcnow
    from needlecare.core import db as database
    from needlecare.core.settings import get_settings
    from needlecare.outcomes import reports
    from needlecare.outcomes import store as report_store

    url = get_settings().resolved_database_url
    database.upgrade(url)
    now = utcnow()

    def progress(view: report_store.ReportView, result: report_store.ViewResult | None) -> None:
        if result is None:
            typer.echo(f"  {view.name:<4} {view.key} …", nl=False)
        elif result.error is None:
            typer.echo(f" {result.seconds:.2f} s")
        else:
            typer.echo(f" failed after {result.seconds:.2f} s ({result.error})")

    total = report_store.RefreshCounts()
    with Session(database.get_engine(url), expire_on_commit=False) as db:
        known = reports.known_clinics(db)
        if clinic is not None and clinic not in known:
            _fail(f"--clinic: {reports.UnknownClinic(clinic, known)}", 2)
        ids = [clinic] if clinic is not None else known
        if not ids:
            typer.echo("no clinics are registered yet; nothing to compute")
            return
        for cid in ids:
            typer.echo(f"{cid}: {len(report_store.PERIODS)} view(s)")
            total += report_store.refresh_standard_views(db, cid, now, progress=progress)
    typer.echo(
        f"stored {total.stored} of {total.views} view(s) for {len(ids)} clinic(s) in {total.seconds:.1f} s"
        + (f"; {total.failed} failed" if total.failed else "")
    )
    if total.failed:
        raise typer.Exit(1)
