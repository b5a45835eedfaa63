"""Aftercare flows: thin orchestration over needlecare.followup.outbox.

``aftercare`` is started by the session-completed event; ``dispatch`` runs on a short
schedule: it sends follow-ups that fall due and finds work whose event was lost. Both drain
*everything* pending, because a flow run costs a process start; the event's session id only
names why the run started. Parameters, run names and logs
carry IDs and counts only.
"""

import time

from prefect import flow, get_run_logger, task

from flows.escalation import send_alerts
from models.base import utcnow
from needlecare.core.db import session_scope
from needlecare.core.settings import get_settings
from needlecare.followup.outbox import PassResult, run_pass


@task(name="drain-outbox", retries=2, retry_delay_seconds=[2, 10])
def drain_outbox(linger_seconds: float) -> dict[str, int]:
    """Plan and deliver until nothing is left, then keep polling for ``linger_seconds`` of idleness."""
    settings = get_settings()
    totals = PassResult()
    idle_since = time.monotonic()
    while True:
        with session_scope() as db:
            result = run_pass(db, now=utcnow(), settings=settings)
        totals.add(result)
        if result.work_done:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= linger_seconds:
            return totals.summary()
        else:
            time.sleep(settings.drain_poll_seconds)


@flow(name="aftercare", log_prints=False)
def aftercare(session_id: int | None = None, linger_seconds: float | None = None) -> dict[str, int]:
    """Send the aftercare notice for ``session_id`` and for every other session still waiting."""
    logger = get_run_logger()
    linger = get_settings().drain_linger_seconds if linger_seconds is None else linger_seconds
    logger.info("started for session %s; draining all pending work", session_id)
    summary = drain_outbox(linger)
    logger.info("done: %s", summary)
    return summary


@flow(name="dispatch", log_prints=False)
def dispatch() -> dict[str, int]:
    """Send follow-ups that fall due, plan sessions whose event was lost (events can be lost), re-alert
    the backup for cases past their SLA, evaluate missed safety checks (R13) and send due alerts."""
    logger = get_run_logger()
    summary = {**drain_outbox(0.0), **send_alerts(0.0)}
    if summary["planned"]:
        logger.warning("planned %d session(s) whose event did not start a run", summary["planned"])
    logger.info("done: %s", summary)
    return summary
