"""`needlecare report`: compile a clinic's outcome report on demand (HTML, CSV, JSON, PDF).

Input errors (unknown clinic, injury or format, a bad date, an --out that does not fit, no Chromium for a
PDF) exit with code 2 and say what to change; a PDF that Chromium fails to print exits with 1. The heavy
imports (SQL statistics, matplotlib) happen inside the command, so other commands start fast.
"""

from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn

import typer

FORMAT_HELP = "html, csv, json or pdf; repeat the option or give a comma list (html,csv). Default: html"


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _date(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: '{value}' is not a date; use YYYY-MM-DD, e.g. 2026-01-31")


def report(
    clinic: Annotated[
        str, typer.Option("--clinic", help="Clinic id, e.g. riverside-physio (`needlecare clinic list`)")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="A file (one format; its extension must match) or a directory: a directory gets the dated "
            "snapshot <out>/<clinic>/<YYYY-MM-DD>/outcomes[-<injury>].<format>",
        ),
    ],
    injury: Annotated[
        str | None, typer.Option("--injury", help="Only this injury (a catalogue slug, e.g. achilles_tendinopathy)")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only episodes started on or after this date (YYYY-MM-DD, clinic's time zone)"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only episodes started before this date (YYYY-MM-DD, clinic's time zone)"),
    ] = None,
    formats: Annotated[list[str] | None, typer.Option("--format", "-f", help=FORMAT_HELP)] = None,
) -> None:
    """Compile a clinic's outcome report: tables and charts (HTML, PDF) or the same figures for analysts
    (CSV, JSON). Small numbers are suppressed as everywhere else (by default counts of 1-10 read "< 11")."""
    from sqlmodel import Session

    from needlecare.core import db as database
    from needlecare.core.settings import get_settings
    from needlecare.outcomes import report_files, report_pdf, reports

    try:
        chosen = report_files.check_formats(
            part for value in (formats or ["html"]) for part in value.split(",") if part
        )
    except reports.ReportError as exc:
        _fail(f"--format: {exc}")
    if injury is not None and injury not in reports.injury_slugs():
        _fail(f"--injury: {reports.UnknownInjury(injury, reports.injury_slugs())}")
    start, end = _date("--since", since), _date("--until", until)
    if start and end and start >= end:
        _fail(f"--since ({start}) must be before --until ({end})")
    to_file = not out.is_dir() and len(chosen) == 1 and out.suffix != ""
    if to_file and out.suffix.lower() != f".{chosen[0]}":
        _fail(f"--out {out}: the extension does not match --format {chosen[0]}; use {out.with_suffix('.' + chosen[0])}")
    if not out.is_dir() and not to_file and out.exists():
        _fail(f"--out {out} is a file; give a directory for several formats (or one format and a file name)")
    if "pdf" in chosen:
        try:
            report_pdf.find_chromium()
        except report_pdf.PdfUnavailable as exc:
            _fail(str(exc))
    needs_charts = any(fmt in ("html", "pdf") for fmt in chosen)
    url = get_settings().resolved_database_url  # explicit: get_engine() without a url caches the first one
    database.upgrade(url)
    written: list[Path] = []
    steps = ["query", *(["charts"] if needs_charts else []), *chosen]
    renderer: report_files.Renderer | None = None
    with typer.progressbar(
        steps,
        label=f"Report for {clinic}",
        file=typer.get_text_stream("stderr"),
        item_show_func=lambda step: step,
        show_eta=False,
    ) as bar:
        for step in bar:
            if step == "query":
                with Session(database.get_engine(url), expire_on_commit=False) as db:
                    try:
                        renderer = report_files.Renderer(
                            reports.build_report(db, clinic, injury=injury, since=start, until=end)
                        )
                    except reports.ReportError as exc:
                        _fail(str(exc))
                continue
            assert renderer is not None
            if step == "charts":
                renderer.render_charts()  # now, so the bar shows the time it takes
                continue
            fmt = report_files.check_formats([step])[0]
            target = out if to_file else report_files.snapshot_path(renderer.data, out, fmt)
            try:
                written.append(report_files.write_atomic(target, renderer.render(fmt)))
            except report_pdf.PdfFailed as exc:
                _fail(f"the PDF could not be made: {exc}", 1)
            except OSError as exc:
                _fail(f"cannot write {target}: {exc.strerror or exc}; choose another --out")
    for path in written:
        typer.echo(str(path))
