"""Claims on an outbox table (patient notifications and practitioner alerts share the shape).

A claim marks a due row ``sending`` with a fresh random ``claim_token`` and a lease:

- **Atomic**: PostgreSQL locks the candidate rows with ``FOR UPDATE SKIP LOCKED`` in one statement and marks
  exactly those in a second one (never more than ``limit``); SQLite runs one conditional ``UPDATE … RETURNING``
  (SQLite serialises writers). Two workers never hold the same row at once.
- **Leased and renewed**: the lease is short; :func:`held` renews it from a background thread while a send is
  in progress, so a slow or hanging provider cannot outlive it, and a worker that died stops renewing and its
  rows are claimed again one lease later.
- **Dead neighbours taken over at once**: a token starts with its owner's machine (a digest of the boot id,
  the PID namespace and the host name) and process id. A claim also takes rows whose lease is still running
  when their owner is a process on this machine that no longer exists, so a sender restarted after a crash
  does not wait out its predecessor's lease. A process that exists (or cannot be checked) is left alone.
- **Owned on release**: :func:`release` writes the outcome only where the token still matches. A worker that
  lost its claim (its lease ran out and another took the row) records nothing, and :func:`renew` tells it not
  to send.
- **Sends marked**: :func:`begin_send` stamps ``send_started_at`` just before a message leaves and
  :func:`release` clears it. A row claimed again with the stamp still set belonged to a sender that stopped
  mid-send (killed, or cut off from the database until its lease ran out): the message may have been
  delivered, so the new claim counts an ambiguous attempt.
- **Outcomes persisted**: :func:`persist` retries the outcome write while the database is unreachable, so a
  short outage after a send does not leave the row to be claimed and sent again.
- **Receipts read first**: a sender writes a delivery receipt (``needlecare.core.receipts``, :func:`receipt`)
  the moment the provider accepts a message; the next claim of a row whose receipt is still there records it
  sent (:func:`receipt_values`) rather than sending it again.

Lease times are on the pass's clock (:class:`PassClock`): the logical time a pass was started with, advanced
by the real time that has passed since, so a pass run "as of" another time keeps consistent leases.
"""

import hashlib
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, case, or_, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, col, func, select

from models import Alert, Notification
from needlecare.core.receipts import Receipt

PENDING, RETRY, SENDING = "pending", "retry", "sending"
Outbox = type[Notification] | type[Alert]
T = TypeVar("T")
OUTCOME_PATIENCE = 300.0  # seconds an outcome write is retried while the database is away
STOPPED_MID_SEND = "the previous sender stopped during a send, so this message may already have been delivered"
FROM_RECEIPT = "recorded as sent from the receipt left by a sender that stopped after the provider accepted it"


@dataclass
class PassClock:
    """The pass's logical start time, moving forward with real time."""

    start: datetime
    _t0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._t0)


@dataclass(frozen=True)
class Claim:
    id: int
    token: str


def _due(model: Outbox, now: datetime, lease_seconds: float) -> Any:
    stale = now - timedelta(seconds=lease_seconds)
    return or_(
        and_(col(model.status).in_([PENDING, RETRY]), col(model.due_at) <= now),
        and_(col(model.status) == SENDING, col(model.claimed_at) < stale),
    )


def _this_machine() -> str:
    """8 hex digits naming this machine's process space (same boot, same PID namespace, same host name)."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(Path(path).read_text().strip() if path.endswith("boot_id") else str(os.stat(path).st_ino))
        except OSError:
            parts.append("?")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def new_token() -> str:
    """A claim token: this machine (8 hex), this process id (8 hex) and 16 random hex digits."""
    return f"{_this_machine()}{os.getpid() & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def _gone(pid: int) -> bool:
    """Whether process ``pid`` of this machine has ended (a zombie, killed and not yet reaped, has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def dead_owner_tokens(db: Session, model: Outbox) -> list[str]:
    """Tokens of rows being sent by processes of this machine that no longer exist."""
    machine = _this_machine()
    query = (
        select(model.claim_token)
        .where(col(model.status) == SENDING, col(model.claim_token).startswith(machine))
        .distinct()
    )
    tokens = [t for t in db.exec(query).all() if t and len(t) == 32]
    return [t for t in tokens if int(t[8:16], 16) != os.getpid() and _gone(int(t[8:16], 16))]


def due_count(db: Session, model: Outbox, *, now: datetime, lease_seconds: float = 60.0) -> int:
    """How many rows of ``model`` :func:`claim` could take now."""
    return int(db.exec(select(func.count()).select_from(model).where(_due(model, now, lease_seconds))).one())


def live_count(db: Session, model: Outbox, *, now: datetime, lease_seconds: float) -> int:
    """Rows of ``model`` being sent under a lease that has not run out (by whoever holds them)."""
    fresh = now - timedelta(seconds=lease_seconds)
    query = select(func.count()).select_from(model).where(col(model.status) == SENDING, col(model.claimed_at) >= fresh)
    return int(db.exec(query).one())


def claim(db: Session, model: Outbox, *, now: datetime, limit: int, lease_seconds: float) -> list[Claim]:
    """Mark up to ``limit`` due rows of ``model`` as sending for this caller, under one new token. Commits."""
    token = new_token()
    due = _due(model, now, lease_seconds)
    if dead := dead_owner_tokens(db, model):
        due = or_(due, and_(col(model.status) == SENDING, col(model.claim_token).in_(dead)))
    candidates = select(model.id).where(due).order_by(col(model.due_at)).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        # Lock exactly these rows first: as a subquery of the UPDATE, PostgreSQL may re-run the LIMIT per row.
        ids = [row for row in db.exec(candidates.with_for_update(skip_locked=True)).all() if row is not None]
        if not ids:
            db.commit()
            return []
        target: Any = col(model.id).in_(ids)
    else:
        # A read first: with nothing due (a warm consumer's idle poll) no write lock is taken at all. The
        # UPDATE below re-checks every condition, so a row taken in between is simply not claimed.
        if db.exec(candidates.limit(1)).first() is None:
            db.commit()
            return []
        target = col(model.id).in_(candidates.scalar_subquery())
    mid_send = col(model.send_started_at).is_not(None)
    stmt = (
        update(model)
        .where(target, due)
        .values(
            status=SENDING,
            claimed_at=now,
            claim_token=token,
            attempts=col(model.attempts) + 1,
            ambiguous_attempts=col(model.ambiguous_attempts) + case((mid_send, 1), else_=0),
            last_error=case((mid_send, STOPPED_MID_SEND), else_=col(model.last_error)),
            send_started_at=None,
        )
        .returning(col(model.id))
    )
    claimed = sorted(row[0] for row in db.exec(stmt).all())
    db.commit()
    return [Claim(row_id, token) for row_id in claimed]


def claim_due(db: Session, model: Outbox, *, now: datetime, limit: int, lease_seconds: float) -> list[int]:
    """:func:`claim`, returning only the ids."""
    return [c.id for c in claim(db, model, now=now, limit=limit, lease_seconds=lease_seconds)]


def receipt(db: Session, model: Outbox, row: Notification | Alert, directory: Path) -> Receipt:
    """Where the delivery receipt of ``row``'s message lives (named for this database, table and row)."""
    url = db.get_bind().engine.url.render_as_string(hide_password=True)
    return Receipt.at(
        directory, database_url=url, table=str(model.__tablename__), row_id=int(row.id or 0), key=row.idempotency_key
    )


def receipt_values(row: Notification | Alert, accepted_at: datetime) -> dict[str, Any]:
    """The outcome of a claimed row whose receipt shows its message was accepted at ``accepted_at``: sent then,
    and the takeover that found the receipt counted neither as an attempt nor as ambiguous."""
    counted_mid_send = row.last_error == STOPPED_MID_SEND and row.ambiguous_attempts > 0
    return {
        "sent_at": accepted_at,
        "attempts": max(row.attempts - 1, 0),
        "ambiguous_attempts": row.ambiguous_attempts - (1 if counted_mid_send else 0),
    }


def _owned(model: Outbox, c: Claim) -> Any:
    return and_(col(model.id) == c.id, col(model.claim_token) == c.token, col(model.status) == SENDING)


def renew(db: Session, model: Outbox, c: Claim, *, now: datetime) -> bool:
    """Extend the lease from ``now``; False when this caller no longer holds the row. Commits."""
    result = db.exec(update(model).where(_owned(model, c)).values(claimed_at=now))
    db.commit()
    return bool(result.rowcount)


def begin_send(db: Session, model: Outbox, c: Claim, *, now: datetime) -> bool:
    """:func:`renew`, and mark that the message is about to leave; False (send nothing) when this caller no
    longer holds the row. Commits."""
    result = db.exec(update(model).where(_owned(model, c)).values(claimed_at=now, send_started_at=now))
    db.commit()
    return bool(result.rowcount)


def release(db: Session, model: Outbox, c: Claim, values: dict[str, Any]) -> bool:
    """Write the outcome of a claim (status and fields) if this caller still holds it. Does not commit."""
    values = {**values, "claimed_at": None, "claim_token": None, "send_started_at": None}
    result = db.exec(update(model).where(_owned(model, c)).values(**values))
    return bool(result.rowcount)


def persist(
    db: Session, write: Callable[[], T], *, patience_seconds: float = OUTCOME_PATIENCE, first_wait: float = 0.25
) -> T:
    """Run ``write`` (which commits), again and again while the database cannot be reached, for up to
    ``patience_seconds``; the session is rolled back between tries. Safe for outcome writes, which only
    land while the claim is still the caller's."""
    deadline = time.monotonic() + patience_seconds
    wait = first_wait
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError):
            db.rollback()
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


@contextmanager
def held(
    bind: Engine | Connection, model: Outbox, c: Claim, *, clock: PassClock, lease_seconds: float
) -> Iterator[None]:
    """Keep renewing the claim's lease (every third of it, on a connection of its own) while the block runs."""
    stop = threading.Event()
    engine = bind.engine if isinstance(bind, Connection) else bind

    def beat() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                with Session(engine) as session:
                    if not renew(session, model, c, now=clock.now()):
                        return
            except Exception:  # the database is away: the lease simply runs out, as for a dead worker
                continue

    thread = threading.Thread(target=beat, name=f"lease-{model.__tablename__}-{c.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def drain(
    db: Session,
    model: Outbox,
    deliver: Callable[[Claim], str],
    *,
    now: datetime,
    batch: int,
    lease_seconds: float,
) -> tuple[list[int], Counter[str]]:
    """Claim due rows batch by batch and hand each to ``deliver`` (which returns the row's new status),
    until none is left. Returns the ids handled and how many ended in each status."""
    handled: list[int] = []
    statuses: Counter[str] = Counter()
    while True:
        claims = claim(db, model, now=now, limit=batch, lease_seconds=lease_seconds)
        for c in claims:
            statuses[str(deliver(c))] += 1
            handled.append(c.id)
        if len(claims) < batch:
            return handled, statuses
