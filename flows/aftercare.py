"""Aftercare flows: thin orchestration over needlecare.followup.outbox.

``aftercare`` is started by the session-completed event; ``dispatch`` runs on a short
schedule: it sends follow-ups that fall due and finds work whose event was lost. Both drain
*everything* pending, because a flow run costs a process start; the event's session id only
names why the run started. An event-started run that finds a burst asks for helper runs, so that
every worker shares it (claims never overlap). ``outbox_consumer`` is the warm path: a scheduled run that
stays up and polls the outbox every DRAIN_POLL_SECONDS, so that an isolated event is answered without waiting
for a flow-run process to start; the event trigger and the dispatch schedule stay as the guarantee when no
consumer is running. Parameters, run names and logs carry IDs and counts only.
"""

import time

from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.runtime import deployment

from flows.escalation import send_alerts
from models.base import utcnow
from needlecare.core.db import session_scope
from needlecare.core.settings import get_settings
from needlecare.followup import outbox
from needlecare.followup.outbox import PassResult, run_pass
from needlecare.followup.planning import plan_all


@task(name="drain-outbox", retries=2, retry_delay_seconds=[2, 10])
def drain_outbox(linger_seconds: float) -> dict[str, int]:
    """Plan and deliver until nothing is left, then keep polling for ``linger_seconds`` of idleness (longer
    while another sender holds claims: see ``outbox.keep_polling``)."""
    settings = get_settings()
    totals = PassResult()
    idle_since = time.monotonic()
    while True:
        with session_scope() as db:
            result = run_pass(db, now=utcnow(), settings=settings)
            totals.add(result)
            if result.work_done:
                idle_since = time.monotonic()
            idle = time.monotonic() - idle_since
            if not outbox.keep_polling(
                db, now=utcnow(), settings=settings, idle_seconds=idle, linger_seconds=linger_seconds
            ):
                return totals.summary()
        time.sleep(settings.drain_poll_seconds)


@task(name="ask-for-helpers")
def ask_for_helpers() -> int:
    """Plan what is new; when more than two claim batches are due, start up to DRAIN_HELPERS more runs of this
    deployment (``helper=True``) for any worker to pick up. Returns how many were started."""
    settings = get_settings()
    deployment_id = deployment.id
    if not settings.drain_helpers or not deployment_id:  # not run from a deployment: nobody could pick them up
        return 0
    with session_scope() as db:
        plan_all(db, now=utcnow())
        due = outbox.due_count(db, now=utcnow(), lease_seconds=settings.claim_lease_seconds)
    wanted = helpers_wanted(due, batch=settings.claim_batch, most=settings.drain_helpers)
    for _ in range(wanted):
        run_deployment(name=deployment_id, parameters={"helper": True}, timeout=0, as_subflow=False)
    return wanted


def helpers_wanted(due: int, *, batch: int, most: int) -> int:
    """One helper per claim batch due beyond the first two, at most ``most``."""
    return max(0, min(most, due // batch - 2))


@flow(name="aftercare", log_prints=False)
def aftercare(
    session_id: int | None = None, linger_seconds: float | None = None, helper: bool = False
) -> dict[str, int]:
    """Send the aftercare notice for ``session_id`` and for every other session still waiting. A ``helper``
    run (started by another one for a burst) drains once and stops, and asks for no helpers itself."""
    logger = get_run_logger()
    linger = get_settings().drain_linger_seconds if linger_seconds is None else linger_seconds
    if helper:
        logger.info("helper run: draining all pending work once")
        linger = 0.0
    else:
        logger.info("started for session %s; draining all pending work", session_id)
        if helpers := ask_for_helpers():
            logger.info("asked for %d helper run(s)", helpers)
    summary = drain_outbox(linger)
    logger.info("done: %s", summary)
    return summary


@flow(name="dispatch", log_prints=False)
def dispatch(helper: bool = False) -> dict[str, int]:
    """Send follow-ups that fall due, plan sessions whose event was lost (events can be lost), re-alert
    the backup for cases past their SLA, evaluate missed safety checks (R13) and send due alerts. A run
    that finds a backlog (after an outage, say) asks for helper runs, as an aftercare run does."""
    logger = get_run_logger()
    if not helper and (helpers := ask_for_helpers()):
        logger.info("asked for %d helper run(s)", helpers)
    summary = {**drain_outbox(0.0), **send_alerts(0.0)}
    if summary["planned"]:
        logger.warning("planned %d session(s) whose event did not start a run", summary["planned"])
    logger.info("done: %s", summary)
    return summary


PROGRESS_SECONDS = 5.0  # how often a warm consumer that has sent something logs its counts so far


@task(name="consume-outbox", retries=2, retry_delay_seconds=[2, 10])
def consume_outbox(seconds: float) -> dict[str, int]:
    """Plan and deliver whatever is due, again every DRAIN_POLL_SECONDS while nothing is, for ``seconds``;
    the counts so far are logged every PROGRESS_SECONDS while they change."""
    logger = get_run_logger()
    return outbox.consume(
        seconds=seconds,
        settings=get_settings(),
        on_progress=lambda counts: logger.info("so far: %s", counts),
        progress_seconds=PROGRESS_SECONDS,
    )


@flow(name="outbox-consumer", log_prints=False)
def outbox_consumer(seconds: float = 310.0) -> dict[str, int]:
    """A warm sender: stays up for ``seconds`` (its schedule starts the next one a little before it ends) and
    sends each message within one poll of its becoming due."""
    logger = get_run_logger()
    logger.info("warm consumer up for %.0f s", seconds)
    summary = consume_outbox(seconds)
    logger.info("done: %s", summary)
    return summary
