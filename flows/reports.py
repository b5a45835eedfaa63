"""Nightly outcome reports: thin orchestration over needlecare.outcomes.reports and report_files.

``compile_outcome_reports`` (deployment ``nightly-outcome-reports``, cron ``30 2 * * *`` UTC in
deploy/prefect.yaml) writes, for every clinic or for the one asked, the dated snapshot
``<data_dir>/reports/<clinic>/<YYYY-MM-DD>/outcomes.{html,csv,json,pdf}``. The PDF needs headless Chromium;
without it the PDF is skipped with a warning and the other formats are still written. One clinic's failure
does not stop the others; the run fails at the end if any clinic failed. Parameters, run names and logs carry
IDs and counts only (the figures stay in the files). The all-time report it computes is also stored as the
dashboard's all-time snapshot (``needlecare.outcomes.store``).

``refresh_dashboard_figures`` (deployment ``refresh-dashboard-figures``, every 15 minutes) precomputes the
dashboard's standard views (every preset period, all injuries and practitioners) of every clinic, or of the one
asked, into the ``report_snapshot`` table, and deletes snapshots older than :data:`PRUNE_DAYS` days. It logs
counts, durations and clinic ids only.
"""

import logging
import time as timer
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.exceptions import MissingContextError
from sqlmodel import Session

from models.base import utcnow
from needlecare.core.db import session_scope
from needlecare.core.settings import get_settings
from needlecare.outcomes import report_files, report_pdf, reports
from needlecare.outcomes import store as report_store

FALLBACK_LOGGER = logging.getLogger("needlecare.flows.reports")
PRUNE_DAYS = 2


def _logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The run logger inside a flow run; a plain logger when the function is called directly (tests, scripts)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return FALLBACK_LOGGER


def snapshot_formats() -> list[report_files.Format]:
    """html, csv, json, and pdf when Chromium is available."""
    formats: list[report_files.Format] = ["html", "csv", "json"]
    if report_pdf.chromium_available():
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
                began = timer.perf_counter()
                data = reports.build_report(db, cid, now=now)
                seconds = timer.perf_counter() - began
                written = report_files.write_snapshot(data, out_dir, formats)
            except reports.UnknownClinic:
                raise
            except Exception:
                failed += 1
                logger.exception("report for clinic %s failed", cid)
                continue
            _store_all_time(db, cid, data, seconds)
            clinics += 1
            files += len(written)
            logger.info("clinic %s: %d file(s) for %s", cid, len(written), data.snapshot_date.isoformat())
    summary = {"clinics": clinics, "files": files, "failed": failed}
    logger.info("done: %s", summary)
    if failed:
        raise RuntimeError(f"outcome reports failed for {failed} clinic(s); see the log above")
    return summary


def _store_all_time(db: Session, clinic_id: str, data: reports.ReportData, seconds: float) -> None:
    """Keep the nightly all-time report as the dashboard's snapshot (a newer one already stored stays)."""
    key = report_store.view_key(None, None, None, None)
    try:
        report_store.put(db, clinic_id, key, data, seconds)
    except Exception as exc:  # the files are written; the dashboard recomputes what it lacks
        _logger().warning("storing the dashboard snapshot of clinic %s failed: %s", clinic_id, type(exc).__name__)


@flow(name="refresh_dashboard_figures", log_prints=False)
def refresh_dashboard_figures(clinic_id: str | None = None) -> dict[str, int]:
    """Precompute the dashboard's standard views for every clinic (or only ``clinic_id``); prune old snapshots.

    One view's failure does not stop the others; the run fails at the end if any failed.
    """
    logger = _logger()
    settings = get_settings()
    now = utcnow()
    total = report_store.RefreshCounts()
    clinics = 0
    with session_scope(settings.resolved_database_url) as db:
        ids = [clinic_id] if clinic_id is not None else reports.known_clinics(db)
        logger.info("refreshing dashboard figures for %d clinic(s)", len(ids))
        for cid in ids:
            counts = report_store.refresh_standard_views(db, cid, now)
            clinics += 1
            total += counts
            logger.info(
                "clinic %s: %d of %d view(s) stored, %d failed, %.1f s",
                cid,
                counts.stored,
                counts.views,
                counts.failed,
                counts.seconds,
            )
        pruned = report_store.prune(db, now - timedelta(days=PRUNE_DAYS))
    summary = {
        "clinics": clinics,
        "views": total.views,
        "stored": total.stored,
        "failed": total.failed,
        "pruned": pruned,
    }
    logger.info("done: %s", summary)
    if total.failed:
        raise RuntimeError(f"dashboard figures failed for {total.failed} view(s); see the log above")
    return summary
