"""The faults, each run against a whole stack with a fresh burst of sessions (``harness.SESSIONS``, 300).

Every scenario returns the tally; the caller checks it. Recovery is counted from the moment the fault ended
(service back, worker killed) to the moment every notice of the burst was sent and received.
"""

import threading
import time
from typing import Protocol

from tests.faults.gate import Mode
from tests.faults.harness import (
    FaultStack,
    Sent,
    Tally,
    all_ids_sent,
    all_sent,
    bodies,
    claimed_now,
    join_posting,
    post_all,
    post_in_background,
    shuffled_twice,
    tally,
    wait_until,
)

OUTAGE_SECONDS = 60.0
RESUME_WITHIN = 90.0  # a killed sender's claimed messages are sent again within this (lease 45 s + a pass)
DELIVERY_PATIENCE = 600.0  # the retry backoff after a minute's outage is at most ~2 min; the rest is a busy machine


class KillableStack(FaultStack, Protocol):
    def ready(self) -> bool: ...
    def kill_prefect(self) -> None: ...
    def restart_prefect(self) -> None: ...
    def kill_sender(self) -> str: ...


def _start(stack: KillableStack) -> None:
    stack.gate.set("pass")
    wait_until(stack, stack.ready, 180, "the stack to be ready")


def _finish(stack: FaultStack, sent_ids: set[int], what: str) -> float:
    wait_until(stack, lambda: all_sent(stack, sent_ids), DELIVERY_PATIENCE, what)
    return time.monotonic()


def no_fault(stack: KillableStack) -> Tally:
    _start(stack)
    payloads = bodies(stack, "none")
    began = time.monotonic()
    sent = post_all(stack, payloads)
    done = _finish(stack, sent.session_ids, "every notice")
    return tally(stack, "none", sent, len(payloads), None, note=f"all sent {done - began:.0f} s after the first post")


def every_event_twice(stack: KillableStack) -> Tally:
    _start(stack)
    payloads = bodies(stack, "twice")
    sent = post_all(stack, shuffled_twice(payloads), senders=4)
    assert sent.accepted == 2 * len(payloads)
    _finish(stack, sent.session_ids, "every notice")
    return tally(stack, "every event twice, shuffled, four senders", sent, len(payloads), None)


def smtp_fault(stack: KillableStack, mode: Mode) -> Tally:
    """The mail server refuses connections (``refuse``) or accepts them and never answers (``hang``) for
    OUTAGE_SECONDS while the burst arrives; then a working one takes its place."""
    _start(stack)
    payloads = bodies(stack, mode)
    stack.gate.set(mode)
    began = time.monotonic()
    sent = post_all(stack, payloads)
    time.sleep(max(0.0, began + OUTAGE_SECONDS - time.monotonic()))
    stack.gate.set("pass")
    back = time.monotonic()
    done = _finish(stack, sent.session_ids, f"every notice after the SMTP {mode} ended")
    what = "refuses connections" if mode == "refuse" else "accepts, then never answers"
    return tally(stack, f"SMTP {what} for {OUTAGE_SECONDS:.0f} s", sent, len(payloads), done - back)


def _mid_burst(stack: KillableStack, tag: str) -> tuple[list[bytes], Sent, threading.Thread]:
    payloads = bodies(stack, tag)
    sent, thread = post_in_background(stack, payloads)
    wait_until(stack, lambda: sent.accepted >= len(payloads) // 3, 300, "a third of the burst to be accepted")
    return payloads, sent, thread


def prefect_killed(stack: KillableStack, down_seconds: float = 10.0) -> Tally:
    """SIGKILL the Prefect server (API and services) a third into the burst; start it again after a pause."""
    _start(stack)
    payloads, sent, thread = _mid_burst(stack, "prefect")
    stack.kill_prefect()
    time.sleep(down_seconds)
    stack.restart_prefect()
    back = time.monotonic()
    join_posting(thread)
    done = _finish(stack, sent.session_ids, "every notice after Prefect came back")
    return tally(stack, "Prefect server killed mid-burst, restarted", sent, len(payloads), done - back)


def sender_killed(stack: KillableStack) -> Tally:
    """SIGKILL what runs the flows (with its flow-run processes) a third into the burst."""
    _start(stack)
    payloads, sent, thread = _mid_burst(stack, "sender")
    wait_until(stack, lambda: bool(claimed_now(stack)), 120, "a sender to hold claims")
    held = claimed_now(stack)  # claims the killed sender held are among these (the others are in flight)
    what = stack.kill_sender()
    killed = time.monotonic()
    wait_until(stack, lambda: all_ids_sent(stack, held), RESUME_WITHIN, "the killed sender's claims to be sent")
    resumed = time.monotonic() - killed
    join_posting(thread)
    done = _finish(stack, sent.session_ids, f"every notice after {what}")
    note = f"its {len(held)} claimed messages resumed and sent {resumed:.0f} s after the kill"
    result = tally(stack, f"{what} mid-burst", sent, len(payloads), done - killed, note)
    assert resumed <= RESUME_WITHIN, result.line()
    return result


class DatabaseStack(KillableStack, Protocol):
    def stop_database(self) -> None: ...
    def start_database(self) -> None: ...


def database_stopped(stack: DatabaseStack, down_seconds: float = 30.0) -> Tally:
    """Stop PostgreSQL (the application's and Prefect's) a third into the burst, for ``down_seconds``; the
    ingress answers 503 meanwhile and the clinic's sender retries."""
    _start(stack)
    payloads, sent, thread = _mid_burst(stack, "pg")
    stack.stop_database()
    time.sleep(down_seconds)
    stack.start_database()
    back = time.monotonic()
    join_posting(thread)
    done = _finish(stack, sent.session_ids, "every notice after PostgreSQL came back")
    note = f"{sent.retried} posts answered 503 or refused, then retried"
    return tally(
        stack, f"PostgreSQL stopped for {down_seconds:.0f} s mid-burst", sent, len(payloads), done - back, note
    )
