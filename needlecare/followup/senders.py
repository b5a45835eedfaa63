"""A bounded pool of senders for one outbox pass.

The pass's own thread claims due rows a batch at a time (``needlecare.core.claims``) and hands each claim to a
queue that holds at most ``concurrency`` of them; ``concurrency`` sender threads take claims from it, each
message in a database session of its own, and keep their SMTP connections for the next message
(``smtpconn.reusing_connections``). Nothing about a claim changes: every sender still renews the lease while
it sends, checks the token before sending and writes the outcome only if it still holds the claim. Claiming
stops at the first batch shorter than asked for, or as soon as a sender raises (the error is raised again in
the pass's thread once every sender has stopped; claims not yet sent are taken again once their lease runs out,
as a stopped worker's are). A pass with one claim, or a concurrency of 1, sends in the pass's own thread (a lone
message over a connection of its own, closed as soon as the server has answered).
"""

import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool
from sqlmodel import Session

from needlecare.core.claims import Claim
from needlecare.followup import smtpconn

Send = Callable[[Session, Claim], str]  # sends one claimed message in the session given; returns its status


@dataclass
class Reuse:
    """How SMTP connections are kept between one sender's messages (``smtpconn.reusing_connections``)."""

    max_messages: int = 100
    idle_seconds: float = 20.0


@dataclass
class _Tally:
    handled: list[int] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, claim: Claim, status: str) -> None:
        with self.lock:
            self.handled.append(claim.id)
            self.statuses[status] += 1

    def fail(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)
        self.stop.set()


def send_all(
    db: Session,
    engine: Engine,
    claim_batch: Callable[[], list[Claim]],
    send: Send,
    *,
    batch: int,
    concurrency: int,
    reuse: Reuse,
) -> tuple[list[int], Counter[str]]:
    """Claim with ``claim_batch`` (which claims up to ``batch`` rows in ``db``) until a batch comes back short,
    and send every claim with ``send`` on up to ``concurrency`` threads. Returns the ids handled and how many
    ended in each status; raises the first error a sender raised."""
    tally = _Tally()
    first = claim_batch()
    if concurrency <= 1 or (len(first) <= 1 and len(first) < batch):
        _inline(db, first, claim_batch, send, batch=batch, reuse=reuse, tally=tally)
        return tally.handled, tally.statuses
    width = min(concurrency if len(first) >= batch else len(first), _connections(engine))
    inbox: queue.Queue[Claim | None] = queue.Queue(maxsize=width)
    threads = [
        threading.Thread(target=_sender, args=(engine, inbox, send, reuse, tally), name=f"sender-{i}", daemon=True)
        for i in range(width)
    ]
    for thread in threads:
        thread.start()
    try:
        claimed = first
        while True:
            for c in claimed:
                if not _put(inbox, c, tally):
                    break
            if len(claimed) < batch or tally.stop.is_set():
                break
            claimed = claim_batch()
    finally:
        for _ in threads:
            inbox.put(None)
        for thread in threads:
            thread.join()
    if tally.errors:
        raise tally.errors[0]
    return tally.handled, tally.statuses


def _connections(engine: Engine) -> int:
    """How many senders the engine's connection pool can serve at once, one connection kept back for the
    pass's own claims (each sender holds one between its commits; lease renewals take one briefly)."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return max(1, pool.size() + max(int(getattr(pool, "_max_overflow", 0)), 0) - 1)
    return 1_000


def _put(inbox: "queue.Queue[Claim | None]", claim: Claim, tally: _Tally) -> bool:
    """Hand one claim over, waiting for room; False once a sender has failed (the claim stays unsent)."""
    while not tally.stop.is_set():
        try:
            inbox.put(claim, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _sender(engine: Engine, inbox: "queue.Queue[Claim | None]", send: Send, reuse: Reuse, tally: _Tally) -> None:
    with smtpconn.reusing_connections(max_messages=reuse.max_messages, idle_seconds=reuse.idle_seconds):
        while (claim := inbox.get()) is not None:
            if tally.stop.is_set():
                continue  # another sender failed: leave the rest to their next claim
            try:
                with Session(engine, expire_on_commit=False) as db:
                    tally.add(claim, send(db, claim))
            except BaseException as error:  # raised again in the pass's thread
                tally.fail(error)


def _inline(
    db: Session,
    first: list[Claim],
    claim_batch: Callable[[], list[Claim]],
    send: Send,
    *,
    batch: int,
    reuse: Reuse,
    tally: _Tally,
) -> None:
    keep = reuse.max_messages if len(first) > 1 else 0  # a lone message closes its connection at once
    with smtpconn.reusing_connections(max_messages=keep, idle_seconds=reuse.idle_seconds):
        claimed = first
        while True:
            for c in claimed:
                tally.add(c, send(db, c))
            if len(claimed) < batch:
                return
            claimed = claim_batch()
