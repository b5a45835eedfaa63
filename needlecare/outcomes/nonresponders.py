"""Non-responders for staff to chase: sent follow-ups that got no answer (the dashboard).

One row per unanswered contact whose survey link went out: status ``sent`` (the window may still be open) or
``expired`` with its window closed in the last ``expired_days`` days. Newest first (due date, then id), one
page at a time (``limit``/``offset``), with the patient's name and phone, the injury, the step, the due date, how many
reminders went out (notifications of the contact with ``sequence >= 1`` and status ``sent``), which channels its
messages went out by (the ``channel`` of its notifications with status ``sent``: email, SMS) and when the
patient was last sent any message. Two statements: a count and the page.

The window condition is also written as a lower bound on ``due_at`` (a window closes at most the longest
window-after-due of the loaded protocols, plus :data:`WINDOW_MARGIN`, after its due date), so the statements
read a range of ``ix_contact_status_due`` instead of every expired contact the clinic ever had.

Filters are the overview's (``needlecare.outcomes.filters``): ``episode.clinic_id``, ``episode.injury``, the period
``since <= episode.started_at < until``, and ``practitioner_id`` by the owner rule (a session-scoped contact
belongs to its session's practitioner, an episode-scoped one to the practitioner of the episode's first
session). Only the clinic's staff see this list (the page is behind the login); names never go to logs.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.sql import ColumnElement, Select
from sqlmodel import Session, SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)
from models.contact import ContactStatus
from models.notification import NotificationStatus
from needlecare.followup.protocols import get_protocols
from needlecare.outcomes.filters import Filters, episode_conditions, practitioner_conditions

DEFAULT_EXPIRED_DAYS = 14
MAX_LIMIT = 500
WINDOW_MARGIN = timedelta(days=7)
CHANNELS = ("email", "sms")
"""The channels a follow-up message can go by, in the order the list names them."""
"""Added to the longest window of today's protocols when bounding ``due_at`` (windows of older versions)."""


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


CONTACT = _table("contact")
EPISODE = _table("episode")
PATIENT = _table("patient")
SESSION = _table("treatment_session")
NOTIFICATION = _table("notification")


@dataclass(frozen=True)
class NonResponder:
    """One sent follow-up without an answer."""

    contact_id: int
    patient_id: int
    patient_name: str
    injury: str
    step_id: str
    status: str  # "sent" (window open, or closed and not yet swept) or "expired"
    due_at: datetime
    window_closes_at: datetime
    window_open: bool
    reminders_sent: int
    last_contact_at: datetime | None  # the latest message sent to the patient (any kind), if any
    phone: str | None = None  # the patient's phone on file, for the call the list asks for
    channels_tried: tuple[str, ...] = ()  # channels of the contact's messages that went out: "email", "sms"


@dataclass(frozen=True)
class NonResponderPage:
    rows: tuple[NonResponder, ...]
    total: int
    limit: int
    offset: int

    @property
    def first(self) -> int:
        """1-based position of the first row shown (0 when the page is empty)."""
        return self.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.rows)

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.rows) < self.total

    @property
    def has_previous(self) -> bool:
        return self.offset > 0


def longest_window_after_due() -> timedelta:
    """The longest time from a contact's due date to the close of its window in any loaded protocol."""
    hours = [s.window_end_hours - s.offset_hours for p in get_protocols().values() for s in p.steps]
    return timedelta(hours=max(hours, default=0))


def _conditions(f: Filters, *, now: datetime, expired_days: int) -> list[ColumnElement[bool]]:
    c = CONTACT.c
    cutoff = now - timedelta(days=expired_days)
    conditions: list[ColumnElement[bool]] = [
        *episode_conditions(f),  # clinic, injury, period: the same cohort as the outcome figures
        *practitioner_conditions(f, c.session_id, c.episode_id),  # the same owner rule
        c.status.in_((ContactStatus.SENT.value, ContactStatus.EXPIRED.value)),
        # "sent" with the window open, or a window that closed (swept to "expired" or not yet) in the last N days
        c.window_closes_at >= cutoff,
        # implied by the line above (a window closes at most that long after the due date): lets the planner
        # read a range of ix_contact_status_due instead of every expired contact ever
        c.due_at >= cutoff - longest_window_after_due() - WINDOW_MARGIN,
    ]
    return conditions


def _matching(f: Filters, *, now: datetime, expired_days: int) -> Select[Any]:
    return (
        select(CONTACT.c.id, CONTACT.c.due_at)
        .select_from(CONTACT.join(EPISODE, EPISODE.c.id == CONTACT.c.episode_id))
        .where(*_conditions(f, now=now, expired_days=expired_days))
    )


def count_stmt(f: Filters, *, now: datetime, expired_days: int = DEFAULT_EXPIRED_DAYS) -> Select[Any]:
    """How many contacts match (for "x-y of total")."""
    matching = _matching(f, now=now, expired_days=expired_days).subquery("m")
    return select(func.count()).select_from(matching)


def page_stmt(
    f: Filters, *, now: datetime, limit: int, offset: int, expired_days: int = DEFAULT_EXPIRED_DAYS
) -> Select[Any]:
    """One page, newest first. The page's ids are chosen first, so the per-row look-ups run for those rows only."""
    c = CONTACT.c
    page = (
        _matching(f, now=now, expired_days=expired_days)
        .order_by(c.due_at.desc(), c.id.desc())
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    n = NOTIFICATION.c
    reminders = (
        select(func.count())
        .where(n.contact_id == c.id, n.sequence >= 1, n.status == NotificationStatus.SENT.value)
        .scalar_subquery()
    )
    tried = {
        channel: select(func.count())
        .where(n.contact_id == c.id, n.channel == channel, n.status == NotificationStatus.SENT.value)
        .scalar_subquery()
        for channel in CHANNELS
    }
    last_sent = (
        select(func.max(n.sent_at))
        .where(n.patient_id == c.patient_id, n.status == NotificationStatus.SENT.value)
        .scalar_subquery()
    )
    return (
        select(
            c.id,
            c.patient_id,
            PATIENT.c.first_name,
            PATIENT.c.last_name,
            PATIENT.c.phone,
            EPISODE.c.injury,
            c.step_id,
            c.status,
            c.due_at,
            c.window_closes_at,
            c.sent_at,
            reminders.label("reminders"),
            *(count.label(f"tried_{channel}") for channel, count in tried.items()),
            last_sent.label("last_sent"),
        )
        .select_from(
            page.join(CONTACT, CONTACT.c.id == page.c.id)
            .join(EPISODE, EPISODE.c.id == c.episode_id)
            .join(PATIENT, PATIENT.c.id == c.patient_id)
        )
        .order_by(c.due_at.desc(), c.id.desc())
    )


def _latest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def _aware(value: Any) -> datetime | None:
    """MAX(sent_at) keeps the column's UTC type; this only guards against a driver handing back text."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def list_nonresponders(
    db: Session,
    clinic_id: str,
    *,
    now: datetime,
    injury: str | None = None,
    practitioner_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    expired_days: int = DEFAULT_EXPIRED_DAYS,
) -> NonResponderPage:
    """Sent follow-ups of one clinic without an answer, newest first (module docstring)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0 or expired_days < 0:
        raise ValueError("offset and expired_days must be 0 or more")
    f = Filters(clinic_id=clinic_id, injury=injury, practitioner_id=practitioner_id, since=since, until=until)
    conn = db.connection()
    total = int(conn.execute(count_stmt(f, now=now, expired_days=expired_days)).scalar_one())
    rows: list[NonResponder] = []
    if total > offset:
        for row in conn.execute(page_stmt(f, now=now, limit=limit, offset=offset, expired_days=expired_days)):
            last_sent = _aware(row.last_sent)
            rows.append(
                NonResponder(
                    contact_id=int(row.id),
                    patient_id=int(row.patient_id),
                    patient_name=f"{row.first_name} {row.last_name}",
                    injury=row.injury,
                    step_id=row.step_id,
                    status=row.status,
                    due_at=row.due_at,
                    window_closes_at=row.window_closes_at,
                    window_open=row.status == ContactStatus.SENT.value and row.window_closes_at > now,
                    reminders_sent=int(row.reminders or 0),
                    last_contact_at=_latest(last_sent, row.sent_at),
                    phone=row.phone,
                    channels_tried=tuple(ch for ch in CHANNELS if getattr(row, f"tried_{ch}")),
                )
            )
    return NonResponderPage(rows=tuple(rows), total=total, limit=limit, offset=offset)
