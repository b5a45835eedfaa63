"""Computed outcome reports kept in the database (table ``report_snapshot``), so pages read figures, not answers.

One row per (clinic, view): the view is the filters of :func:`needlecare.outcomes.reports.build_report` written as a
canonical key (:func:`view_key`), the report is stored as JSON (:func:`encode` / :func:`decode`, an exact
round trip) with when it was computed and how long that took. A report holds aggregates only (no patient
rows, names or free text).

- :func:`get` / :func:`stamp` read a snapshot (a snapshot that no longer decodes, e.g. written by an older
  version, reads as missing); :func:`put` upserts one in its own transaction (an older report never replaces
  a newer one); :func:`prune` deletes old ones; :func:`forget` a clinic's (when its reporting rules change);
  :func:`trim` keeps a clinic's other views (custom periods, yesterday's presets) to a bounded number.
- :func:`standard_views` are the views worth precomputing for a clinic (every preset period of the
  dashboard, all injuries, all practitioners); :func:`refresh` computes and stores a list of views.

The stored JSON keeps every field of the report, including :attr:`needlecare.outcomes.suppression.Figure.n` (the raw
base of a figure, which ``Figure.model_dump()`` and every export leave out): the encoder here walks the report
itself instead of using pydantic's serializer, so the exclusion still holds everywhere else.
"""

import json
import logging
import math
import numbers
import time as timer
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models import Clinic, ReportSnapshot
from models.base import utcnow
from needlecare.outcomes import reports
from needlecare.outcomes.periods import PERIODS, preset_since
from needlecare.outcomes.reports import ReportData

log = logging.getLogger("needlecare.outcomes.store")

FORMAT_VERSION = 4
"""Written with every snapshot; a snapshot of another version reads as missing, so the dashboard computes it afresh
(bump it whenever the report gains, loses or changes a field). 2: ``OutcomeReport.headline``. 3: complementary
suppression (``report_protect``), recall-matched pain pairs. 4: ``ReportData.channels`` (response by channel), which a
version-3 snapshot would have read as empty."""
KEY_MAX_LENGTH = 200
ANY = "*"
OPEN = "-"

_ADAPTER: TypeAdapter[ReportData] = TypeAdapter(ReportData)


class UnreadableSnapshot(ValueError):
    """A stored report that does not decode into the current :class:`ReportData` (another version, damage)."""


# ------------------------------------------------------------------------------------------------- keys


def _moment(name: str, value: datetime | None) -> str:
    if value is None:
        return OPEN
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC).isoformat()


def view_key(injury: str | None, practitioner_id: int | None, since: datetime | None, until: datetime | None) -> str:
    """The canonical text of a report's filters.

    E.g. ``injury=*;practitioner=*;since=2026-08-24T04:00:00+00:00;until=-``: ``*`` = all injuries /
    practitioners, ``-`` = no bound. Times are written in UTC, so the same instant always
    gives the same key.
    """
    key = (
        f"injury={injury or ANY};practitioner={ANY if practitioner_id is None else practitioner_id};"
        f"since={_moment('since', since)};until={_moment('until', until)}"
    )
    if len(key) > KEY_MAX_LENGTH:  # pragma: no cover - slugs and ids are short
        raise ValueError(f"view key longer than {KEY_MAX_LENGTH} characters")
    return key


@dataclass(frozen=True)
class ReportView:
    """One set of filters to compute a report for (``name`` labels it in progress output and logs)."""

    name: str
    injury: str | None = None
    practitioner_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def key(self) -> str:
        return view_key(self.injury, self.practitioner_id, self.since, self.until)


def standard_views(clinic: Clinic, now: datetime) -> list[ReportView]:
    """The views to precompute for a clinic: every preset period of the dashboard, all injuries (an injury's
    figures are read out of the all-injuries report), all practitioners. Same boundaries as the dashboard's."""
    return [ReportView(name=period, since=preset_since(period, clinic.timezone, now)) for period in PERIODS]


# --------------------------------------------------------------------------------------------- encoding


def _plain(value: Any) -> Any:
    """The value as JSON-ready data; pydantic models with every field (``exclude=True`` ones included)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("a report value is not a finite number")
        return number
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a report datetime is naive")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("report dicts must have text keys")
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(f"cannot store a {type(value).__name__} in a report snapshot")


def encode(data: ReportData) -> str:
    """The report as JSON text, every field kept (``decode(encode(d)) == d``)."""
    document = {"format": FORMAT_VERSION, "report": _plain(data)}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(text: str) -> ReportData:
    """The report back from :func:`encode`; raises :class:`UnreadableSnapshot` for anything else."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
            raise UnreadableSnapshot("not a report snapshot of this format version")
        return _ADAPTER.validate_python(document["report"])
    except (ValueError, ValidationError, KeyError, TypeError) as exc:
        if isinstance(exc, UnreadableSnapshot):
            raise
        raise UnreadableSnapshot(type(exc).__name__) from None


# ------------------------------------------------------------------------------------------------ storage


@dataclass(frozen=True)
class Stamp:
    """When a stored report was computed and how long that took (read without the report itself)."""

    computed_at: datetime
    seconds: float


@dataclass(frozen=True)
class Stored:
    data: ReportData
    computed_at: datetime
    seconds: float


def stamp(db: Session, clinic_id: str, key: str) -> Stamp | None:
    """The stored report's time and duration, without reading or decoding it (None when there is none)."""
    row = db.exec(
        select(ReportSnapshot.computed_at, ReportSnapshot.seconds).where(
            ReportSnapshot.clinic_id == clinic_id, ReportSnapshot.view_key == key
        )
    ).first()
    return None if row is None else Stamp(computed_at=row[0], seconds=row[1])


def get(db: Session, clinic_id: str, key: str) -> Stored | None:
    """The stored report for this view; None when there is none or it does not decode (logged: clinic and key)."""
    row = db.exec(
        select(ReportSnapshot.data, ReportSnapshot.computed_at, ReportSnapshot.seconds).where(
            ReportSnapshot.clinic_id == clinic_id, ReportSnapshot.view_key == key
        )
    ).first()
    if row is None:
        return None
    try:
        data = decode(row[0])
    except UnreadableSnapshot:
        log.warning("report snapshot of clinic %s, view %s does not decode; treated as missing", clinic_id, key)
        return None
    return Stored(data=data, computed_at=row[1], seconds=row[2])


def put(
    db: Session, clinic_id: str, key: str, data: ReportData, seconds: float, *, computed_at: datetime | None = None
) -> bool:
    """Store the report for this view (insert or replace), committed in its own transaction.

    ``computed_at`` defaults to the report's ``generated_at``. A stored report computed later is kept (False is
    returned): two computations of one view that finish out of order leave the newer figures. The write goes
    through a separate session on ``db``'s engine, so ``db`` must not hold uncommitted writes (on SQLite they
    would block it).
    """
    at = computed_at or data.generated_at
    if at.tzinfo is None:
        raise ValueError("computed_at must be timezone-aware")
    values = {"clinic_id": clinic_id, "view_key": key, "computed_at": at, "seconds": seconds, "data": encode(data)}
    bind = db.get_bind()
    dialect = bind.dialect.name
    table = ReportSnapshot.__table__  # type: ignore[attr-defined]
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(**values)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=["clinic_id", "view_key"],
            set_={k: pg.excluded[k] for k in ("computed_at", "seconds", "data")},
            where=table.c.computed_at <= pg.excluded.computed_at,
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table).values(**values)
        stmt = lite.on_conflict_do_update(
            index_elements=["clinic_id", "view_key"],
            set_={k: lite.excluded[k] for k in ("computed_at", "seconds", "data")},
            where=table.c.computed_at <= lite.excluded.computed_at,
        )
    else:  # pragma: no cover - the app runs on SQLite and PostgreSQL only
        raise RuntimeError(f"report snapshots are not supported on {dialect}")
    with Session(bind) as own:
        written = own.exec(stmt.returning(table.c.id)).first() is not None  # no row: a newer one is kept
        own.commit()
    return written


def prune(db: Session, older_than: datetime) -> int:
    """Delete every snapshot computed before ``older_than`` (its own transaction); returns how many."""
    if older_than.tzinfo is None:
        raise ValueError("older_than must be timezone-aware")
    with Session(db.get_bind()) as own:
        result = own.exec(delete(ReportSnapshot).where(col(ReportSnapshot.computed_at) < older_than))
        own.commit()
    return int(result.rowcount or 0)


def trim(db: Session, clinic_id: str, keep: Collection[str], limit: int) -> int:
    """Delete the clinic's snapshots, other than the views in ``keep``, beyond the ``limit`` most recently
    computed (its own transaction); returns how many. Bounds what custom periods asked for by staff store."""
    if limit < 0:
        raise ValueError("limit must not be negative")
    with Session(db.get_bind()) as own:
        extra = own.exec(
            select(ReportSnapshot.id)
            .where(ReportSnapshot.clinic_id == clinic_id, col(ReportSnapshot.view_key).not_in(list(keep)))
            .order_by(col(ReportSnapshot.computed_at).desc(), col(ReportSnapshot.id).desc())
            .offset(limit)
        ).all()
        if not extra:
            return 0
        own.exec(delete(ReportSnapshot).where(col(ReportSnapshot.id).in_(list(extra))))
        own.commit()
    return len(extra)


def forget(db: Session, clinic_id: str) -> int:
    """Delete every snapshot of one clinic in ``db``'s transaction (the caller commits); returns how many.

    For a change that alters figures without any answer changing, e.g. the clinic's reporting rules: the
    dashboard then computes them afresh instead of serving figures suppressed under the old rules.
    """
    result = db.exec(delete(ReportSnapshot).where(col(ReportSnapshot.clinic_id) == clinic_id))
    return int(result.rowcount or 0)


# ---------------------------------------------------------------------------------------------- refreshing


@dataclass(frozen=True)
class ViewResult:
    """One computed view: how long it took, and the exception type name when it failed."""

    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class RefreshCounts:
    views: int = 0
    stored: int = 0
    failed: int = 0
    seconds: float = 0.0

    def __add__(self, other: "RefreshCounts") -> "RefreshCounts":
        return RefreshCounts(
            self.views + other.views,
            self.stored + other.stored,
            self.failed + other.failed,
            self.seconds + other.seconds,
        )


Progress = Callable[[ReportView, ViewResult | None], None]
"""Called with ``None`` before a view is computed and with its :class:`ViewResult` after."""


def compute(db: Session, clinic_id: str, view: ReportView | None = None, **filters: Any) -> tuple[ReportData, float]:
    """``reports.build_report`` for a view (or keyword filters); returns the report and the seconds it took."""
    if view is not None:
        filters = {
            "injury": view.injury,
            "practitioner_id": view.practitioner_id,
            "since": view.since,
            "until": view.until,
        }
    began = timer.perf_counter()
    data = reports.build_report(db, clinic_id, now=utcnow(), **filters)
    return data, timer.perf_counter() - began


def refresh(
    db: Session, clinic_id: str, views: Sequence[ReportView], now: datetime, progress: Progress | None = None
) -> RefreshCounts:
    """Compute and store each view of one clinic. A view that fails is counted (and logged by clinic, view and
    exception type) and the others still run; an unknown clinic raises :class:`reports.UnknownClinic` first.

    ``now`` is when the refresh was asked for (the views' period boundaries come from it); each report's
    ``generated_at`` is when its own computation started.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if db.get(Clinic, clinic_id) is None:
        raise reports.UnknownClinic(clinic_id, reports.known_clinics(db))
    stored = failed = 0
    total = 0.0
    for view in views:
        if progress is not None:
            progress(view, None)
        began = timer.perf_counter()
        error: str | None = None
        try:
            data, seconds = compute(db, clinic_id, view)
            stored += put(db, clinic_id, view.key, data, seconds)
        except Exception as exc:
            db.rollback()
            failed += 1
            error = type(exc).__name__
            log.error("report snapshot of clinic %s, view %s failed: %s", clinic_id, view.key, error)
        elapsed = timer.perf_counter() - began
        total += elapsed
        if progress is not None:
            progress(view, ViewResult(seconds=elapsed, error=error))
    return RefreshCounts(views=len(views), stored=stored, failed=failed, seconds=total)


def refresh_standard_views(
    db: Session, clinic_id: str, now: datetime, progress: Progress | None = None
) -> RefreshCounts:
    """:func:`refresh` of the clinic's :func:`standard_views` (what the flow, the CLI and the demo store);
    raises :class:`reports.UnknownClinic` for an unknown clinic."""
    clinic = db.get(Clinic, clinic_id)
    if clinic is None:
        raise reports.UnknownClinic(clinic_id, reports.known_clinics(db))
    return refresh(db, clinic_id, standard_views(clinic, now), now, progress)
