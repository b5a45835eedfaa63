"""Bursts of signed sessions against a running stack, and the tally of what the SMTP capture received.

A burst is sent as a clinic's system would: every event until it is accepted, waiting out a 503's
``Retry-After`` or a refused connection. The tally counts, per aftercare notice expected: delivered (at least
one copy), duplicates (copies beyond the first) and how many of those fall in the documented ambiguous
window (the notice's ``ambiguous_attempts`` > 0: a send whose reply never came), and lost.
"""

import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from models import Notification
from needlecare.core import claims
from needlecare.core import db as database
from needlecare.core.signing import sign
from needlecare.dev.mailcapture import list_mail
from needlecare.intake.sample import sample_event
from tests.faults.gate import Gate

SESSIONS = int(os.environ.get("NEEDLECARE_FAULT_SESSIONS", "300"))
TIMEOUT_SCALE = float(os.environ.get("NEEDLECARE_E2E_TIMEOUT_SCALE", "3"))
URL = "/api/v1/events/session-completed"
LINES: list[str] = []  # one per fault run, printed in the terminal summary
_serial = itertools.count(1)


class FaultStack(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def web_url(self) -> str: ...
    @property
    def clinic_secret(self) -> str: ...
    @property
    def db_url(self) -> str: ...
    @property
    def mail_dir(self) -> Path: ...
    @property
    def gate(self) -> Gate: ...

    def dead(self) -> list[str]: ...


def bodies(stack: FaultStack, tag: str, count: int = SESSIONS) -> list[bytes]:
    """``count`` distinct sessions of distinct patients, with external ids unique to this run."""
    out = []
    for _ in range(count):
        n = next(_serial)
        event = sample_event(clinic_id="riverside-physio", external_session_id=f"F-{stack.name}-{tag}-{n:05d}")
        event["patient"].update(external_id=f"PT-F-{stack.name}-{tag}-{n}", email=f"p{n}.{tag}@example.org")
        out.append(json.dumps(event).encode())
    return out


@dataclass
class Sent:
    session_ids: set[int] = field(default_factory=set)
    accepted: int = 0  # responses 200/202, duplicates of an earlier post included
    retried: int = 0  # 503s and connection failures waited out
    lock: threading.Lock = field(default_factory=threading.Lock)


def post_all(stack: FaultStack, payloads: list[bytes], *, senders: int = 1, sent: Sent | None = None) -> Sent:
    """Post every payload until accepted, ``senders`` at a time. Gives up on one only after 10 minutes."""
    sent = sent or Sent()

    def post(client: httpx.Client, raw: bytes) -> None:
        headers = {"Content-Type": "application/json", "X-Needlecare-Signature": sign(raw, stack.clinic_secret)}
        deadline = time.monotonic() + 600
        while True:
            try:
                response = client.post(stack.web_url + URL, content=raw, headers=headers, timeout=30)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code in (200, 202):
                with sent.lock:
                    sent.session_ids.add(response.json()["session_id"])
                    sent.accepted += 1
                return
            if response is not None and response.status_code != 503:
                raise AssertionError(f"{response.status_code}: {response.text[:300]}")
            if time.monotonic() > deadline:
                raise AssertionError("an event was not accepted within 10 minutes")
            with sent.lock:
                sent.retried += 1
            wait = float(response.headers.get("Retry-After", 1)) if response is not None else 1.0
            time.sleep(min(wait, 5.0))

    chunks = [payloads[i::senders] for i in range(senders)]

    def run(chunk: list[bytes]) -> None:
        with httpx.Client() as client:
            for raw in chunk:
                post(client, raw)

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(run, chunks))
    return sent


def post_in_background(stack: FaultStack, payloads: list[bytes], senders: int = 1) -> tuple[Sent, threading.Thread]:
    sent = Sent()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            post_all(stack, payloads, senders=senders, sent=sent)
        except BaseException as exc:  # re-raised by join_posting
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="burst")
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return sent, thread


def join_posting(thread: threading.Thread) -> None:
    thread.join(timeout=900)
    assert not thread.is_alive(), "the burst did not finish posting"
    if thread.errors:  # type: ignore[attr-defined]
        raise thread.errors[0]  # type: ignore[attr-defined]


def wait_until(stack: FaultStack, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while time.monotonic() < deadline:
        if dead := stack.dead():
            raise AssertionError(f"{', '.join(dead)} died while waiting for {what}")
        try:
            if predicate():
                return
        except (SQLAlchemyError, httpx.HTTPError, OSError):
            pass  # the fault may still be in force
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout * TIMEOUT_SCALE:.0f} s waiting for {what}")


def _notices(stack: FaultStack, session_ids: set[int]) -> list[Notification]:
    with Session(database.get_engine(stack.db_url)) as db:
        query = select(Notification).where(Notification.session_id.in_(session_ids))  # type: ignore[union-attr]
        return [n for n in db.exec(query).all() if n.kind == "aftercare"]


def _copies(stack: FaultStack) -> Counter[str]:
    return Counter(m.headers.get("X-Needlecare-Notification", "") for m in list_mail(stack.mail_dir, limit=1_000_000))


def all_sent(stack: FaultStack, session_ids: set[int]) -> bool:
    notes = _notices(stack, session_ids)
    copies = _copies(stack)
    return len(notes) == len(session_ids) and all(n.status == "sent" and copies[str(n.id)] for n in notes)


def claimed_now(stack: FaultStack) -> set[int]:
    """Ids of the messages some sender holds a claim on right now."""
    with Session(database.get_engine(stack.db_url)) as db:
        return {n.id for n in db.exec(select(Notification).where(Notification.status == "sending")).all() if n.id}


def all_ids_sent(stack: FaultStack, ids: set[int]) -> bool:
    with Session(database.get_engine(stack.db_url)) as db:
        rows = db.exec(select(Notification).where(Notification.id.in_(ids))).all()  # type: ignore[union-attr]
    copies = _copies(stack)
    return all(n.status == "sent" and copies[str(n.id)] for n in rows)


@dataclass
class Tally:
    stack: str
    fault: str
    sessions: int
    expected: int
    delivered: int
    duplicates: int
    ambiguous: int
    lost: int
    recovery: float | None
    note: str = ""
    from_receipts: int = 0  # messages a killed sender had delivered, recorded sent from its receipt

    def line(self) -> str:
        recovery = "—" if self.recovery is None else f"{self.recovery:.0f} s"
        return (
            f"{self.stack:10} | {self.fault:44} | sessions {self.sessions:4} | expected {self.expected:4} | "
            f"delivered {self.delivered:4} | duplicates {self.duplicates} (ambiguous {self.ambiguous}) | "
            f"lost {self.lost} | recovery {recovery}{' | ' + self.note if self.note else ''}"
            + (f" | {self.from_receipts} recorded sent from a receipt" if self.from_receipts else "")
        )


def tally(stack: FaultStack, fault: str, sent: Sent, sessions: int, recovery: float | None, note: str = "") -> Tally:
    notes = _notices(stack, sent.session_ids)
    copies = _copies(stack)
    delivered = sum(1 for n in notes if copies[str(n.id)])
    extra = {n.id: copies[str(n.id)] - 1 for n in notes if copies[str(n.id)] > 1}
    ambiguous = sum(c for nid, c in extra.items() if any(n.id == nid and n.ambiguous_attempts for n in notes))
    result = Tally(
        stack=stack.name,
        fault=fault,
        sessions=sessions,
        expected=sessions,
        delivered=delivered,
        duplicates=sum(extra.values()),
        ambiguous=ambiguous,
        lost=sessions - delivered,
        recovery=recovery,
        note=note,
        from_receipts=sum(1 for n in notes if n.last_error == claims.FROM_RECEIPT),
    )
    LINES.append(result.line())
    print("\nFAULT " + result.line(), flush=True)
    return result


def check(result: Tally) -> None:
    assert result.lost == 0, result.line()
    assert result.duplicates == result.ambiguous, result.line()


def shuffled_twice(payloads: list[bytes], seed: int = 7) -> list[bytes]:
    doubled = payloads * 2
    random.Random(seed).shuffle(doubled)
    return doubled
