"""Escalation flow: thin orchestration over needlecare.safety.escalation and needlecare.safety.alerts.

The answer, its evaluation, its case and its alert row were stored together by the request that took the
answer; ``escalation`` (started by ``needlecare.survey.answered``) sends the queued alerts at once, and the
``dispatch`` schedule runs the same pass every 30 s: backup re-alerts after the SLA, missed safety checks
(R13), and any alert a lost event left behind. Parameters, run names and logs carry IDs and counts only.
"""

import time
from dataclasses import asdict

from prefect import flow, get_run_logger, task

from models.base import utcnow
from needlecare.core.db import session_scope
from needlecare.core.settings import get_settings
from needlecare.safety import alerts, escalation


def escalation_pass() -> dict[str, int]:
    """One sweep (re-alerts, missed checks) and one round of alert sending."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as db:
        swept = escalation.sweep(db, now=now)
        sent = alerts.send_due(db, now=now, settings=settings)
    return {**asdict(swept), **{f"alerts_{k}": v for k, v in asdict(sent).items()}}


@task(name="send-alerts", retries=2, retry_delay_seconds=[2, 10])
def send_alerts(linger_seconds: float) -> dict[str, int]:
    """Run passes until nothing is left, then keep polling for ``linger_seconds`` of idleness."""
    settings = get_settings()
    totals: dict[str, int] = {}
    idle_since = time.monotonic()
    while True:
        result = escalation_pass()
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
        if result["alerts_claimed"] or result["realerted"] or result["missed_evaluated"]:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= linger_seconds:
            return totals
        else:
            time.sleep(settings.drain_poll_seconds)


@flow(name="escalation", log_prints=False)
def escalation_flow(response_id: int | None = None, linger_seconds: float | None = None) -> dict[str, int]:
    """Send the practitioner alert for ``response_id``'s case, and every other alert that is due."""
    logger = get_run_logger()
    linger = get_settings().drain_linger_seconds if linger_seconds is None else linger_seconds
    logger.info("started for response %s", response_id)
    summary = send_alerts(linger)
    logger.info("done: %s", summary)
    return summary
