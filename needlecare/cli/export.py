"""`needlecare export …`: write a clinic's follow-up data for other systems (FHIR R4 NDJSON)."""

from pathlib import Path
from typing import Annotated, NoReturn

import typer

export_app = typer.Typer(
    rich_markup_mode=None, help="Export a clinic's follow-up data for other systems.", no_args_is_help=True
)


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@export_app.command("fhir")
def fhir(
    clinic: Annotated[
        str, typer.Option("--clinic", help="Clinic id, e.g. riverside-physio (`needlecare clinic list`)")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Directory for Questionnaire.ndjson, QuestionnaireResponse.ndjson and Observation.ndjson "
            "(created if missing; files of those names are replaced)",
        ),
    ],
) -> None:
    """Write the clinic's surveys as FHIR R4 NDJSON: Questionnaires, responses and scored Observations.

    Patients appear only as Patient/<id>: no names, contact details or free-text answers leave the app.
    """
    from sqlmodel import Session

    from needlecare.core import db as database
    from needlecare.core.settings import get_settings
    from needlecare.followup.protocols import ProtocolError
    from needlecare.outcomes import fhir_export  # here: fhir.resources takes ~1 s to import, other commands skip it

    url = get_settings().resolved_database_url  # explicit: get_engine() without a url caches the first one
    database.upgrade(url)
    with Session(database.get_engine(url), expire_on_commit=False) as db:
        try:
            fhir_export.check_clinic(db, clinic)
            total = fhir_export.count_responses(db, clinic)
            with typer.progressbar(
                length=total, label="Exporting survey responses", file=typer.get_text_stream("stderr")
            ) as bar:
                counts = fhir_export.export_clinic(db, clinic, out, progress=bar.update)
        except fhir_export.UnknownClinic as exc:
            _fail(str(exc), 2)
        except fhir_export.OutDirNotWritable as exc:
            _fail(f"{exc}; choose another --out directory", 2)
        except fhir_export.ExportError as exc:
            _fail(str(exc), 1)
        except ProtocolError as exc:
            _fail("cannot export: the protocol packs do not load:\n" + "\n".join(exc.problems), 1)
    lines = [f"exported clinic '{clinic}' to {out.resolve()}:"]
    for resource_type, count in counts.by_type().items():
        lines.append(f"  {resource_type:<22} {count:>8}  {fhir_export.FILES[resource_type]}")
    if counts.older_versions:
        lines.append(
            f"note: {counts.older_versions} response(s) answered an older protocol version; only the current "
            "packs' Questionnaires are exported, so those references do not resolve within this export."
        )
    typer.echo("\n".join(lines))
