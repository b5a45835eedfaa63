"""Nightly outcome reports: thin orchestration over needlecare.reports.

``compile_outcome_reports`` (deployment ``nightly-outcome-reports``, cron ``30 2 * * *`` UTC in
deploy/prefect.yaml) writes, for every clinic or for the one asked, the dated snapshot
``<data_dir>/reports/<clinic>/<YYYY-MM-DD>/outcomes.{html,csv,json,pdf}``. The PDF needs headless Chromium;
without it the PDF is skipped with a warning and the other formats are still written. One clinic's failure
does not stop the others; the run fails at the end if any clinic failed. Parameters, run names and logs carry
IDs and counts only (the figures stay in the files).
"""

import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.exceptions import MissingContextError

from models.base import utcnow
from needlecare import reports
from needlecare.db import session_scope
from needlecare.settings import get_settings

FALLBACK_LOGGER = logging.getLogger("needlecare.flows.reports")


def _logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The run logger inside a flow run; a plain logger when the function is called directly (tests, scripts)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return FALLBACK_LOGGER


def snapshot_formats() -> list[reports.Format]:
    """html, csv, json, and pdf when Chromium is available."""
    formats: list[reports.Format] = ["html", "csv", "json"]
    if reports.chromium_available():
        formats.append("pdf")
    else:
        _logger().warning("no Chromium found: PDF reports skipped (install chromium or set NEEDLECARE_CHROMIUM)")
    return formats


@flow(name="compile_outcome_reports", log_prints=False)
def compile_outcome_reports(clinic_id: str | None = None) -> dict[str, int]:
    """Write today's outcome report snapshot for every clinic (or only ``clinic_id``)."""
    logger = _logger()
    settings = get_settings()
    out_dir: Path = settings.data_dir / "reports"
    formats = snapshot_formats()
    now = utcnow()
    clinics = files = failed = 0
    with session_scope(settings.resolved_database_url) as db:
        ids = [clinic_id] if clinic_id is not None else reports.known_clinics(db)
        logger.info("compiling outcome reports for %d clinic(s) in %d format(s)", len(ids), len(formats))
        for cid in ids:
            try:
                data = reports.build_report(db, cid, now=now)
                written = reports.write_snapshot(data, out_dir, formats)
            except reports.UnknownClinic:
                raise
            except Exception:
                failed += 1
                logger.exception("report for clinic %s failed", cid)
                continue
            clinics += 1
            files += len(written)
            logger.info("clinic %s: %d file(s) for %s", cid, len(written), data.snapshot_date.isoformat())
    summary = {"clinics": clinics, "files": files, "failed": failed}
    logger.info("done: %s", summary)
    if failed:
        raise RuntimeError(f"outcome reports failed for {failed} clinic(s); see the log above")
    return summary
