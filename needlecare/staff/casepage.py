"""What the case page shows around a case: the treatment session it follows (injury, side, date and
practitioner), and the confirmation line shown after an action on the case.

A case raised from an episode-level survey (no session of its own) shows the latest session of the episode
before the case opened.
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from models import EscalationCase, Practitioner, TreatmentSession
from models.base import utcnow
from needlecare.core import clock
from needlecare.staff.labels import injury_name, side_name

CONFIRMABLE = ("acknowledged", "resolved")


@dataclass(frozen=True)
class SessionContext:
    injury: str  # the catalogue's name
    side: str  # "Left", "Right", "Both sides"
    session_date: date  # in the clinic's time zone
    practitioner: str
    own_session: bool  # False when it is the episode's latest session, the case having none of its own


def session_context(db: Session, case: EscalationCase, tz: str) -> SessionContext | None:
    """The session behind a case, or None when the episode has no session on record."""
    session = db.get(TreatmentSession, case.session_id) if case.session_id is not None else None
    own = session is not None
    if session is None:
        session = db.exec(
            select(TreatmentSession)
            .where(TreatmentSession.episode_id == case.episode_id, col(TreatmentSession.completed_at) <= case.opened_at)
            .order_by(col(TreatmentSession.completed_at).desc())
            .limit(1)
        ).first()
    if session is None:
        return None
    practitioner = db.get(Practitioner, session.practitioner_id)
    return SessionContext(
        injury=injury_name(session.injury),
        side=side_name(session.side),
        session_date=clock.local_date(session.completed_at, tz),
        practitioner=practitioner.name if practitioner is not None else "not on record",
        own_session=own,
    )


def confirmation(case: EscalationCase, done: str | None, tz: str) -> str | None:
    """The line shown after an action, e.g. "Case acknowledged at 14:05", from the time stored on the case.

    None when ``done`` is not an action this case has had (a hand-typed ``?done=`` shows nothing)."""
    if done not in CONFIRMABLE:
        return None
    moment: datetime | None = case.acknowledged_at if done == "acknowledged" else case.resolved_at
    if moment is None:
        return None
    local = clock.local(moment, tz)
    today = clock.local_date(utcnow(), tz)
    when = f"{local:%H:%M}" if local.date() == today else f"{local:%H:%M} on {local:%a %d %b}"
    return f"Case {done} at {when}"
