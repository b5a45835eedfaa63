"""The demo's private database, and the copy of its finished history into the application database.

The simulation (``needlecare.demo.simulation``) runs the real pipeline on a simulated clock. Its passes
(planning, dispatch, the escalation sweep) serve every clinic of the database they are given, and the rows it
writes pass through states a live pass would act on (a planned check-in due in the simulated past, a message
pending in the outbox, an open case). So it runs on a scratch SQLite database of its own (:func:`scratch`), which
holds only the demo clinic, and the live stack never sees it. When the simulation has reached ``until``, the
history is made final there (:func:`finalize`) and copied into the application database (:func:`copy_history`),
with new ids. Only rows no live pass acts on are copied:

- every session is planned (``planned_at`` set);
- check-ins: answered, expired or skipped only. Check-ins still planned, or sent and still open at ``until``, are
  left out (with their messages): the history ends there, and a live pass would otherwise send or expire them;
- outbox messages: a check-in's first message and the reminders the pipeline would have delivered by ``until``
  (due while its check was open and before its answer) are recorded ``sent`` at their due time, by the channel
  dispatch chose (through no transport: the demo delivers nothing, and a live sender claims only pending or
  retrying rows), so the history shows which channels each check-in went by; every other message and every
  practitioner alert is ``skipped`` with the reason ``demo history: not sent``;
- escalation cases: resolved by the demo clinic's staff login within their SLA (the sweep re-alerts only open
  cases), missed safety checks already evaluated (R13, by the sweep the simulation runs).

The copy commits every ``CHUNK`` rows, so on SQLite a live pass waits for one chunk at most; each chunk takes the
write lock before its ids are reserved after the table's largest (PostgreSQL reserves them from the sequences).
The marker row ``demo.seeded`` is written last.
"""

import atexit
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, or_, select, text, update
from sqlmodel import Session, SQLModel

from models import (
    Alert,
    AlertStatus,
    Clinic,
    Contact,
    ContactStatus,
    Notification,
    NotificationStatus,
    Practitioner,
    StaffUser,
)
from needlecare.core import db as database
from needlecare.demo.bulk import _insert_returning

NOT_SENT = "demo history: not sent"
CHECK_IN_MESSAGES = ("survey", "reminder")  # needlecare.followup.dispatch: a check-in's first message, its reminders
CHUNK = 5000  # rows a transaction: on SQLite other writers wait for one chunk at most (well under a second)
# Not copied: the clinic and logins are mapped; snapshots and request rate-limit buckets belong to the target database.
_SKIPPED_TABLES = {"clinic", "staff_user", "web_session", "report_snapshot", "rate_bucket"}
_FINAL_CONTACTS = (ContactStatus.ANSWERED.value, ContactStatus.EXPIRED.value, ContactStatus.SKIPPED.value)
# Ids inside unique keys ("contact:7:0", "aftercare:session:3", "missed:12", "case:4:backup") and audit rows.
_KEY_PART = re.compile(r"(?<![A-Za-z_])(session|episode|contact|case|response|missed|notification|evaluation):(\d+)")
_KEY_TABLES = {
    "session": "treatment_session",
    "episode": "episode",
    "contact": "contact",
    "missed": "contact",
    "case": "escalation_case",
    "response": "survey_response",
    "notification": "notification",
    "evaluation": "rule_evaluation",
}
_ENTITY_TABLES = {"session": "treatment_session", "case": "escalation_case"}

Progress = Callable[[str, int, int], None]  # (table just copied, rows copied so far, rows left out so far)


@dataclass
class CopyCounts:
    rows: int = 0
    left_out: int = 0  # check-ins still planned or open at ``until``, and the rows that belong to them
    copied: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    dropped: dict[str, int] = field(default_factory=dict)  # table -> rows left out


def _fast(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA synchronous=OFF")  # a scratch file: nothing to keep if the machine stops
    cursor.close()


_schema: list[Path] = []  # this process's migrated, empty database, copied for each scratch database


def _migrated_schema() -> Path:
    """An empty database at the newest migration, made once per process (one engine in ``core.db``'s cache)."""
    if not _schema or not _schema[0].exists():
        folder = Path(tempfile.mkdtemp(prefix="needlecare-demo-schema-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        url = f"sqlite:///{folder / 'schema.db'}"
        database.upgrade(url)
        database.get_engine(url).dispose()
        _schema[:] = [folder / "schema.db"]
    return _schema[0]


@contextmanager
def scratch(folder: Path | None = None) -> Iterator[Session]:
    """A fresh, migrated SQLite database in a temporary directory, deleted afterwards; or in ``folder``, kept
    (a worker process writes it, the parent copies it with :func:`opened` and deletes the folder)."""
    keep = folder is not None
    folder = folder or Path(tempfile.mkdtemp(prefix="needlecare-demo-"))
    try:
        shutil.copyfile(_migrated_schema(), folder / "demo.db")
        with opened(folder / "demo.db") as db:
            yield db
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def opened(path: Path) -> Iterator[Session]:
    """A session on the scratch database at ``path``, on an engine of its own (disposed afterwards)."""
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _fast)
    try:
        with Session(engine, expire_on_commit=False) as db:
            yield db
    finally:
        engine.dispose()


def clinic_fields(target: Session, clinic_id: str) -> dict[str, Any]:
    """The clinic row (config included), to mirror in a scratch database."""
    clinic = target.get(Clinic, clinic_id)
    if clinic is None:  # pragma: no cover - the caller creates it
        raise LookupError(clinic_id)
    return clinic.model_dump()


def mirror_clinic(private: Session, clinic: dict[str, Any], email: str, name: str) -> StaffUser:
    """The clinic in the scratch database, and a staff user there standing for the demo's login."""
    private.add(Clinic(**clinic))
    private.flush()
    user = StaffUser(clinic_id=clinic["id"], email=email, name=name, password_hash="!")
    private.add(user)
    private.commit()
    return user


def finalize(private: Session, *, until: datetime | None = None) -> int:
    """Check-in messages due by ``until`` while their check was open (and before its answer) become ``sent`` at
    their due time; the other messages and alerts the demo left pending become ``skipped`` (never sent). Commits;
    returns the number recorded as sent (none without ``until``)."""
    waiting = (NotificationStatus.PENDING.value, NotificationStatus.RETRY.value)
    delivered = 0
    if until is not None:
        n, c = Notification.__table__.c, Contact.__table__.c  # type: ignore[attr-defined]
        open_then = (
            select(c.id)
            .where(
                c.id == n.contact_id,
                c.status.in_((ContactStatus.ANSWERED.value, ContactStatus.EXPIRED.value)),
                n.due_at < c.window_closes_at,
                or_(c.answered_at.is_(None), n.due_at <= c.answered_at),
            )
            .exists()
        )
        delivered = private.exec(
            update(Notification)
            .where(n.status.in_(waiting), n.kind.in_(CHECK_IN_MESSAGES), n.due_at <= until, open_then)
            .values(status=NotificationStatus.SENT.value, sent_at=n.due_at)
        ).rowcount
    private.exec(
        update(Notification)
        .where(Notification.status.in_(waiting))  # type: ignore[attr-defined]
        .values(status=NotificationStatus.SKIPPED.value, skip_reason=NOT_SENT)
    )
    private.exec(
        update(Alert)
        .where(Alert.status.in_((AlertStatus.PENDING.value, AlertStatus.RETRY.value)))  # type: ignore[attr-defined]
        .values(status=AlertStatus.SKIPPED.value, skip_reason=NOT_SENT)
    )
    private.commit()
    return int(delivered or 0)


def copy_history(
    private: Session,
    target: Session,
    *,
    clinic_id: str,
    staff: tuple[int, int],
    last: Any | None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> CopyCounts:
    """Copy every row of the private database (the demo clinic's only) into ``target`` with new ids, ``chunk``
    rows a transaction, then ``last`` (an ORM row: the marker that the history is complete). Every row copied is
    final, so a live pass that reads between two chunks finds nothing to act on; a second run is refused as
    soon as one patient is copied. Practitioners the clinic has already (another worker's copy) are reused."""
    counts = CopyCounts()
    ids: dict[str, dict[int, int]] = {"staff_user": {staff[0]: staff[1]}}
    source = private.connection()
    ordered = [t for t in SQLModel.metadata.sorted_tables if t.name not in _SKIPPED_TABLES]
    tables = [t for t in ordered if t.name != "audit_event"] + [t for t in ordered if t.name == "audit_event"]
    for table in tables:
        rows = [dict(row) for row in source.execute(select(table).order_by(table.c.id)).mappings()]
        ids[table.name] = {}
        if table.name == "practitioner":
            rows = _reuse_practitioners(target, clinic_id, rows, ids[table.name])
        kept = 0
        for start in range(0, len(rows), chunk):
            part = [
                row
                for row in (_mapped(table, row, ids, clinic_id) for row in rows[start : start + chunk])
                if row is not None
            ]
            _write_lock(target, clinic_id)
            olds = [row.pop("id") for row in part]
            news = _insert_returning(target, table_model(table), part)
            target.commit()
            ids[table.name].update(zip(olds, news, strict=True))
            kept += len(part)
        counts.left_out += len(rows) - kept
        counts.copied[table.name], counts.dropped[table.name] = kept, len(rows) - kept
        counts.rows += kept
        if progress is not None:
            progress(table.name, counts.rows, counts.left_out)
    if last is not None:
        target.add(last)
        target.commit()
    return counts


def _reuse_practitioners(
    target: Session, clinic_id: str, rows: list[dict[str, Any]], mapping: dict[int, int]
) -> list[dict[str, Any]]:
    """The practitioner rows still to insert; those the clinic has already (same external id) are mapped."""
    table = Practitioner.__table__  # type: ignore[attr-defined]
    found = target.execute(select(table.c.external_id, table.c.id).where(table.c.clinic_id == clinic_id)).all()
    existing = {str(external): int(pid) for external, pid in found}
    missing = []
    for row in rows:
        if row["external_id"] in existing:
            mapping[row["id"]] = existing[row["external_id"]]
        else:
            missing.append(row)
    return missing


def _write_lock(target: Session, clinic_id: str) -> None:
    """On SQLite, take the database's write lock before ids are reserved after the table's largest (it is held to
    the commit, so no other writer takes those ids); PostgreSQL reserves them from the sequences."""
    if target.get_bind().dialect.name == "sqlite":
        target.execute(text("UPDATE clinic SET name = name WHERE id = :clinic"), {"clinic": clinic_id})


class _Model:
    """What ``bulk._insert_returning`` needs of a model: its table."""

    def __init__(self, table: Table) -> None:
        self.__table__ = table


def table_model(table: Table) -> Any:
    return _Model(table)


def _mapped(table: Table, row: dict[str, Any], ids: dict[str, dict[int, int]], clinic_id: str) -> dict[str, Any] | None:
    """The row with its references moved to the new ids, or None when it is left out (or refers to a row left out)."""
    if table.name == "contact" and row["status"] not in _FINAL_CONTACTS:
        return None
    for column in table.columns:
        value = row.get(column.name)
        for key in column.foreign_keys:
            referred = key.column.table.name
            if value is None or referred == "clinic":
                continue
            new = ids.get(referred, {}).get(value)
            if new is None:
                return None
            row[column.name] = new
    if "idempotency_key" in row:
        row["idempotency_key"] = _rekey(row["idempotency_key"], ids)
    if table.name == "audit_event":
        return _audit_row(row, ids, clinic_id)
    return row


def _rekey(key: str, ids: dict[str, dict[int, int]]) -> str:
    def swap(match: re.Match[str]) -> str:
        table = _KEY_TABLES[match.group(1)]
        return f"{match.group(1)}:{ids.get(table, {}).get(int(match.group(2)), match.group(2))}"

    return _KEY_PART.sub(swap, key)


def _audit_row(row: dict[str, Any], ids: dict[str, dict[int, int]], clinic_id: str) -> dict[str, Any] | None:
    entity = str(row["entity"])
    table = _ENTITY_TABLES.get(entity, entity)
    if table in ids and str(row["entity_id"]).isdigit():
        new = ids[table].get(int(row["entity_id"]))
        if new is None:
            return None
        row["entity_id"] = str(new)
    elif entity == "clinic" and row["entity_id"] != clinic_id:  # pragma: no cover - the private database has one
        return None
    actor = str(row["actor"])
    if actor.startswith("staff:") and actor[6:].isdigit():
        row["actor"] = f"staff:{ids['staff_user'].get(int(actor[6:]), actor[6:])}"
    return row
