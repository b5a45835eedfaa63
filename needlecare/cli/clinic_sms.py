"""`needlecare clinic sms …`: a clinic's phone region and its own SMS route."""

from typing import Annotated

import typer


def _fail(message: str, code: int) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _check_url(url: str) -> str | None:
    """Why Apprise cannot use ``url`` as an SMS route, or None when it can."""
    import apprise

    from needlecare.followup.sms import sms_url

    if "://" not in url:
        return "it is not a URL: give an Apprise SMS URL such as twilio://SID:TOKEN@+15551230000"
    if apprise.Apprise.instantiate(sms_url(url, "+15550100000")) is None:
        return "Apprise does not recognise it; see https://github.com/caronc/apprise/wiki for the SMS URL forms"
    return None


def clinic_sms(
    clinic_id: Annotated[str, typer.Argument(help="The clinic's id")],
    region: Annotated[
        str | None, typer.Option(help="Two-letter country code used to read local phone numbers, e.g. GB or US")
    ] = None,
    sms_url: Annotated[
        str | None,
        typer.Option(
            "--sms-url",
            help="The clinic's own Apprise SMS URL without the recipient ({to} marks where the number goes); "
            "overrides NEEDLECARE_PATIENT_SMS_URL for this clinic's patients. Never printed back.",
        ),
    ] = None,
    clear_sms_url: Annotated[
        bool, typer.Option("--clear-sms-url", help="Remove the clinic's own route (the installation's is used)")
    ] = False,
) -> None:
    """Set how a clinic's patients are texted: the region for local numbers and/or the clinic's own SMS route."""
    from pydantic import ValidationError

    from needlecare.cli.main import _db
    from needlecare.intake.clinics import set_sms_route

    if region is None and sms_url is None and not clear_sms_url:
        _fail("nothing to change: give --region, --sms-url or --clear-sms-url", 2)
    if sms_url is not None and clear_sms_url:
        _fail("give either --sms-url or --clear-sms-url, not both", 2)
    if sms_url is not None and (why := _check_url(sms_url)) is not None:
        _fail(f"--sms-url: {why}", 2)
    region = region.strip().upper() if region is not None else None
    with _db() as db:
        try:
            clinic = set_sms_route(db, clinic_id, region=region, sms_url=sms_url, clear_url=clear_sms_url, actor="cli")
        except LookupError as exc:
            _fail(f"{exc}: list clinics with `needlecare clinic list`", 1)
            return
        except ValidationError as exc:
            _fail("--region: " + exc.errors()[0]["msg"].removeprefix("Value error, "), 2)
            return
    route = "its own route" if clinic.sms_url else "the installation's route (NEEDLECARE_PATIENT_SMS_URL)"
    typer.echo(
        f"clinic '{clinic_id}': region {clinic.region or 'not set (NEEDLECARE_SMS_DEFAULT_REGION)'}; texts use {route}."
    )
